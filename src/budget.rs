//! One memory budget for the open batches of every lane in the process.
//!
//! A lane's open batch holds encoded rows (and copies of its dead letters). Per-route
//! `max_bytes` bounds one batch; this bounds all of them together, so a consumer assigned
//! many partitions does not multiply its memory by the partition count
//! (`[service] batch_memory`).
//!
//! Rule: before a lane adds a chunk of records to its open batch, it checks whether that
//! would take the lanes together over the limit while its own batch is at least its fair
//! share (limit / lanes holding data); if so it stores its batch first. The lanes below their
//! share keep batching, so one busy lane does not force tiny inserts on the others; an idle
//! lane above its share is closed by `max_age` at the latest. Batches are cut at chunk
//! boundaries and a chunk is added whatever its size (about 1 MiB of messages at most), so
//! the limit can be exceeded by one chunk's rows per lane: the bound is for sizing RSS, not
//! exact bytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    held: AtomicUsize,
    peak: AtomicUsize,
    holders: AtomicUsize,
    /// Shares alive: the lanes, holding data or not.
    lanes: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(MemoryBudget {
            limit,
            held: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            holders: AtomicUsize::new(0),
            lanes: AtomicUsize::new(0),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes the lanes hold together right now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The most the lanes held together since start.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// A lane's share of the budget; dropping it gives its bytes back.
    pub fn share(self: &Arc<Self>) -> Share {
        self.lanes.fetch_add(1, Ordering::Relaxed);
        Share {
            budget: self.clone(),
            mine: 0,
        }
    }
}

/// What one lane holds, as last reported.
#[derive(Debug)]
pub struct Share {
    budget: Arc<MemoryBudget>,
    mine: usize,
}

impl Share {
    /// Reports the lane's current holding.
    pub fn set(&mut self, bytes: usize) {
        let b = &self.budget;
        match (self.mine, bytes) {
            (0, n) if n > 0 => {
                b.holders.fetch_add(1, Ordering::Relaxed);
            }
            (m, 0) if m > 0 => {
                b.holders.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if bytes >= self.mine {
            let now = b.held.fetch_add(bytes - self.mine, Ordering::Relaxed) + bytes - self.mine;
            b.peak.fetch_max(now, Ordering::Relaxed);
        } else {
            b.held.fetch_sub(self.mine - bytes, Ordering::Relaxed);
        }
        self.mine = bytes;
    }

    /// The budget divided among the lanes holding data now (this one counted if it does).
    pub fn fair_share(&self) -> usize {
        let b = &self.budget;
        b.limit / b.holders.load(Ordering::Relaxed).max(1)
    }

    /// Whether this lane should store its open batch before adding `extra` bytes of
    /// records: adding them would take the lanes over the limit, and this lane would hold at
    /// least its fair share.
    pub fn should_cut_before(&self, extra: usize) -> bool {
        let b = &self.budget;
        if self.mine == 0 || b.held.load(Ordering::Relaxed).saturating_add(extra) <= b.limit {
            return false;
        }
        let holders = b.holders.load(Ordering::Relaxed).max(1);
        self.mine.saturating_add(extra) >= b.limit / holders
    }
}

impl Share {
    /// The largest batch buffer a lane may keep for its next batch once its batch is stored:
    /// the budget split evenly over all lanes, plus one chunk of records (1 MiB), by which a
    /// batch cut at its share can exceed it. A kept buffer is resident but counts nothing
    /// while the lane's batch is empty, so these together must stay within the budget: sized
    /// by the lanes holding data (the fair share), 32 lanes each kept what they built while
    /// few lanes held data, and 1M wide messages peaked at 560-590 MiB RSS.
    pub fn keep_at_most(&self) -> usize {
        let b = &self.budget;
        (b.limit / b.lanes.load(Ordering::Relaxed).max(1)).saturating_add(KEEP_SLACK)
    }
}

/// See [`Share::keep_at_most`].
const KEEP_SLACK: usize = 1 << 20;

impl Drop for Share {
    fn drop(&mut self) {
        self.set(0);
        self.budget.lanes.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_buffers_are_bounded_by_the_budget_split_over_all_lanes() {
        let b = MemoryBudget::new(128 << 20);
        let one = b.share();
        assert_eq!(one.keep_at_most(), (128 << 20) + KEEP_SLACK);
        let mut lanes: Vec<Share> = (0..31).map(|_| b.share()).collect();
        // Only one lane holds data: its fair share is the whole budget, but what it may keep
        // is a 32nd of it, so 32 kept buffers fit the budget.
        lanes[0].set(10 << 20);
        assert_eq!(lanes[0].fair_share(), 128 << 20);
        assert_eq!(one.keep_at_most(), (4 << 20) + KEEP_SLACK);
        lanes.truncate(7);
        assert_eq!(one.keep_at_most(), (16 << 20) + KEEP_SLACK);
    }

    #[test]
    fn the_lane_above_its_share_cuts_when_the_total_is_over() {
        let budget = MemoryBudget::new(100);
        let mut big = budget.share();
        let mut small = budget.share();
        big.set(70);
        small.set(20);
        assert_eq!(budget.held(), 90);
        assert!(
            !big.should_cut_before(10) && !small.should_cut_before(10),
            "fits"
        );
        small.set(40);
        assert_eq!(budget.held(), 110);
        assert_eq!(budget.peak(), 110);
        // Fair share is 50: only the lane holding 70 cuts; 40 + 5 is still under its share.
        assert!(big.should_cut_before(5));
        assert!(!small.should_cut_before(5));
        assert!(small.should_cut_before(10));
        big.set(0);
        assert_eq!(budget.held(), 40);
        assert!(!small.should_cut_before(50));
        drop(small);
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.holders.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn one_lane_alone_cuts_at_the_limit() {
        let budget = MemoryBudget::new(100);
        let mut only = budget.share();
        only.set(90);
        assert!(!only.should_cut_before(10));
        assert!(only.should_cut_before(11));
        // An empty batch never cuts: the chunk is added whatever its size.
        only.set(0);
        assert!(!only.should_cut_before(1000));
        assert_eq!(only.fair_share(), 100);
        let mut other = budget.share();
        other.set(10);
        only.set(10);
        assert_eq!(only.fair_share(), 50);
    }
}
