//! The dead-letter path of a lane: messages ClickHouse or the decoder refused go to the
//! dead-letter topic or table (read back from Kafka when the lane kept no copy), and the
//! range is committed only once every one of them is acknowledged there.

use super::*;

/// A dead letter whose message is read back from Kafka ([`Lane::read_back`]).
struct ReadBack {
    offset: i64,
    reason: String,
    /// What the lane kept of it (all but its headers), if anything.
    copy: Option<OwnedRecord>,
}

impl Lane {
    /// Stores the batch's dead letters as rows of the dead-letter table, in one INSERT named
    /// by the batch's range (see `dead_letter_table.rs`), retried until it is acknowledged or
    /// the partition is revoked. A dead letter the table cannot hold stops the run
    /// uncommitted: it is never dropped.
    async fn store_dead_letters(
        &self,
        sealed: &SealedBatch,
        dead: &[(OwnedRecord, String)],
        database: &str,
        table: &str,
    ) -> Result<Stored, LaneFailure> {
        let stop = |message: String| LaneFailure {
            partition: self.id.clone(),
            table_changed: false,
            message,
        };
        let Some(plan) = &self.rt.dead_letters else {
            return Err(stop(format!(
                "the dead-letter table {database}.{table} was not planned"
            )));
        };
        let mut rows = Vec::new();
        for (rec, reason) in dead {
            dead_letter_table::encode_row(plan, &self.id, rec, reason, &mut rows).map_err(|e| {
                stop(format!(
                    "the dead letter of offset {} cannot be a row of {database}.{table} ({e}); stopping without committing",
                    rec.offset
                ))
            })?;
        }
        let req = InsertRequest {
            database: database.to_string(),
            table: table.to_string(),
            columns: plan.columns.clone(),
            format: plan.format,
            header: plan.header.clone(),
            body: bytes::Bytes::from(rows).into(),
            dedup_token: Some(dedup::token(database, table, &self.id, sealed.range)),
        };
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            if self.committer.fence().is_raised() {
                return Ok(Stored::Fenced);
            }
            match self.client.insert(&req).await {
                Ok(_) => {
                    RouteMetrics::add(&self.rt.metrics.dead_lettered, dead.len() as u64);
                    return Ok(Stored::Yes);
                }
                Err(e @ InsertError::SchemaChanged { .. }) => return Err(self.table_changed(&e)),
                Err(e @ InsertError::BadData { .. }) => {
                    return Err(stop(format!(
                        "the dead-letter table {database}.{table} refused the dead letters of {} ({e}); stopping without committing",
                        sealed.range
                    )))
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(partition = %self.id, error = %e, retry_in = ?delay,
                        "dead-letter table insert failed; retrying (offsets not committed)");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

impl Lane {
    /// Sends the batch's bad messages and the rows ClickHouse rejected (`rejected`: offset,
    /// reason) to the dead-letter path.
    pub(super) async fn deliver_dead(
        &self,
        sealed: &SealedBatch,
        rejected: Vec<(i64, String)>,
    ) -> Result<Stored, LaneFailure> {
        if sealed.dead.is_empty() && rejected.is_empty() {
            return Ok(Stored::Yes);
        }
        // A topic or a table keeps the messages themselves; dropping keeps their offsets.
        let to_topic = !matches!(self.rt.route.bad_messages, BadMessages::Drop);
        let mut dead: Vec<(OwnedRecord, String)> = Vec::new();
        // Messages to read back from Kafka for their dead letters: rows ClickHouse rejected
        // (the batch holds only their rows), and bad messages whose headers were not read
        // (their copy stands in should the log no longer hold them).
        let mut unread: Vec<ReadBack> = Vec::new();
        for d in &sealed.dead {
            if to_topic && !d.headers_read {
                unread.push(ReadBack {
                    offset: d.record.offset,
                    reason: d.reason.clone(),
                    copy: Some(d.record.clone()),
                });
            } else {
                dead.push((d.record.clone(), d.reason.clone()));
            }
        }
        if to_topic {
            unread.extend(rejected.into_iter().map(|(offset, reason)| ReadBack {
                offset,
                reason,
                copy: None,
            }));
        } else {
            // Dropped, not sent: only the offsets and reasons are logged and counted.
            dead.extend(
                rejected.into_iter().map(|(offset, reason)| {
                    (OwnedRecord::without_value(offset, Vec::new()), reason)
                }),
            );
        }
        if !unread.is_empty() {
            match self.read_back(unread).await {
                Some(records) => dead.extend(records),
                None => return Ok(Stored::Fenced),
            }
        }
        dead.sort_by_key(|(r, _)| r.offset);
        self.send_dead_letters(sealed, &dead).await
    }

    /// The original messages of `letters`, read back from Kafka by offset. Retries until it
    /// succeeds or the partition is revoked (`None`): committing without the dead letters
    /// would lose those messages. A message the log no longer holds (retention or compaction
    /// removed it since it was read) is logged as an error and becomes its copy without
    /// headers, marked `sluice.original=headers-gone`, or, without a copy (a row ClickHouse
    /// rejected), a dead letter without a value, marked `sluice.original=gone`.
    async fn read_back(&self, letters: Vec<ReadBack>) -> Option<Vec<(OwnedRecord, String)>> {
        let offsets: Vec<i64> = letters.iter().map(|w| w.offset).collect();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            if self.committer.fence().is_raised() {
                return None;
            }
            let refetch = self.rt.refetch.clone();
            let id = self.id.clone();
            let wanted = offsets.clone();
            let res = tokio::task::spawn_blocking(move || refetch.fetch(&id, &wanted)).await;
            let got = match res {
                Ok(Ok(got)) => got,
                Ok(Err(e)) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(partition = %self.id, error = %e, retry_in = ?delay, "cannot read rejected rows' messages back from Kafka; retrying (offsets not committed)");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(partition = %self.id, error = %e, "read-back task failed; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
            };
            let mut by_offset: std::collections::HashMap<i64, OwnedRecord> =
                got.found.into_iter().map(|r| (r.offset, r)).collect();
            return Some(
                letters
                    .into_iter()
                    .map(|w| match (by_offset.remove(&w.offset), w.copy) {
                        (Some(r), _) => (r, w.reason),
                        (None, Some(mut copy)) => {
                            tracing::error!(partition = %self.id, offset = w.offset, reason = %w.reason,
                                "a bad message is no longer in Kafka (retention or compaction removed it); its dead letter carries its key and value without its headers");
                            copy.headers = vec![(
                                "sluice.original".to_string(),
                                Some(b"headers-gone".to_vec()),
                            )];
                            (copy, w.reason)
                        }
                        (None, None) => {
                            tracing::error!(partition = %self.id, offset = w.offset, reason = %w.reason,
                                "a row ClickHouse rejected is no longer in Kafka (retention or compaction removed it); its dead letter carries no value");
                            let gone = vec![("sluice.original".to_string(), Some(b"gone".to_vec()))];
                            (OwnedRecord::without_value(w.offset, gone), w.reason)
                        }
                    })
                    .collect(),
            );
        }
    }

    async fn send_dead_letters(
        &self,
        sealed: &SealedBatch,
        dead: &[(OwnedRecord, String)],
    ) -> Result<Stored, LaneFailure> {
        // Every bad message is logged with its reason; a flood of them is summarised per
        // batch after the first few, so the log stays readable (the counters have them all).
        const LOGGED_PER_BATCH: usize = 20;
        let action = match &self.rt.route.bad_messages {
            BadMessages::Drop => "dropped (on_bad_message = \"drop\")",
            BadMessages::DeadLetter { .. } => "sent to the dead-letter topic",
            BadMessages::DeadLetterTable { .. } => "stored in the dead-letter table",
        };
        for (rec, reason) in dead.iter().take(LOGGED_PER_BATCH) {
            let offset = rec.offset;
            tracing::warn!(partition = %self.id, offset, reason = %reason, "bad message {action}");
        }
        if dead.len() > LOGGED_PER_BATCH {
            tracing::warn!(partition = %self.id, range = %sealed.range, more = dead.len() - LOGGED_PER_BATCH, "more bad messages {action} in this batch");
        }
        let topic = match &self.rt.route.bad_messages {
            BadMessages::Drop => {
                RouteMetrics::add(&self.rt.metrics.dropped, dead.len() as u64);
                return Ok(Stored::Yes);
            }
            BadMessages::DeadLetter { topic } => topic,
            BadMessages::DeadLetterTable { database, table } => {
                return self.store_dead_letters(sealed, dead, database, table).await;
            }
        };
        let Some(producer) = &self.rt.dlq else {
            return Err(LaneFailure {
                partition: self.id.clone(),
                table_changed: false,
                message: "dead-letter producer missing".into(),
            });
        };
        // All of the batch's dead letters in flight at once (librdkafka batches them); the
        // ones that fail are retried until acknowledged, or until the partition is revoked.
        let mut pending: Vec<&(OwnedRecord, String)> = dead.iter().collect();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        while !pending.is_empty() {
            if self.committer.fence().is_raised() {
                return Ok(Stored::Fenced);
            }
            let sends = pending
                .iter()
                .map(|(rec, reason)| producer.send(topic, &self.id, rec, reason));
            let results = futures::future::join_all(sends).await;
            let mut failed = Vec::new();
            let mut last_error = None;
            for (item, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(()) => RouteMetrics::add(&self.rt.metrics.dead_lettered, 1),
                    Err(e) => {
                        last_error = Some(e);
                        failed.push(item);
                    }
                }
            }
            pending = failed;
            if let Some(e) = last_error {
                let delay = backoff.next_delay();
                tracing::warn!(partition = %self.id, failed = pending.len(), error = %e, retry_in = ?delay, "dead-letter produce failed; retrying (offsets not committed)");
                tokio::time::sleep(delay).await;
            }
        }
        Ok(Stored::Yes)
    }
}
