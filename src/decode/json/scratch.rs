//! Per-row scratch: where each wanted field's value sits, reused row after row, so the steady
//! state allocates nothing per row.

use super::*;

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Slot {
    /// Row generation that filled the slot; a stale generation means "absent", which saves
    /// clearing all slots for every row.
    pub(super) gen: u32,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) kind: Kind,
}

/// Reusable per-thread state for [`encode_json_row_with`]. Holds no meaning between rows;
/// one scratch may serve any number of plans.
#[derive(Debug, Default)]
pub struct RowScratch {
    pub(super) gen: u32,
    pub(super) slots: Vec<Slot>,
    /// Unescaped string values.
    pub(super) tmp: Vec<u8>,
    /// Unescaped field names (only for names written with escapes).
    pub(super) key: Vec<u8>,
    /// The text of a typed field value ([`FieldKind::Double`], [`FieldKind::Scaled`]) whose
    /// column reads it as text.
    pub(super) typed_text: Vec<u8>,
    /// `UnknownFields::Add`: the row's fields without a column, each once.
    pub(super) new_fields: Vec<NewColumn>,
}

impl RowScratch {
    pub fn new() -> RowScratch {
        RowScratch::default()
    }

    /// Records field `id`'s value span for row `gen`; `false` if that row filled it already
    /// (the field is given twice). On the slots alone, so a borrowed `key` may stay alive.
    #[inline(always)]
    pub(super) fn fill(
        slots: &mut [Slot],
        gen: u32,
        id: usize,
        start: usize,
        end: usize,
        kind: Kind,
    ) -> bool {
        match slots.get_mut(id) {
            Some(slot) if slot.gen == gen => false,
            Some(slot) => {
                *slot = Slot {
                    gen,
                    start,
                    end,
                    kind,
                };
                true
            }
            None => true,
        }
    }

    #[inline]
    pub(super) fn start_row(&mut self, fields: usize) {
        if self.slots.len() < fields {
            self.slots.resize(fields, Slot::default());
        }
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            // Wrapped: old generations could alias the new ones, so clear for real.
            self.slots.iter_mut().for_each(|s| s.gen = 0);
            self.gen = 1;
        }
    }
}

thread_local! {
    pub(super) static SCRATCH: RefCell<RowScratch> = RefCell::new(RowScratch::new());
}
