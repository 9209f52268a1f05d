//! Values shared between containers: which lists, dicts and sets are finished, and what a value
//! that refers back to an unfinished one owes it (see the module docs, "Known limits").
//!
//! A value's depth and expanded size are recorded when it is built, from its items as they are
//! then. That stays an upper bound only if no item grows afterwards, so a list, dict or set is
//! finished once its own stack entry is put inside another value or popped (CPython adds every
//! item before that), and changing it then is refused (`Machine::add_items`). A reference to one
//! fetched from the memo before that (CPython's self-referencing data) makes the holder owe the
//! container's final depth and size ([`Slot::back`], [`Slot::refs`]), added at `STOP`.

use super::*;

impl Machine<'_, '_, '_, '_, '_> {
    /// The items at `range` are being put inside another value (whose memo link is `into`, 0
    /// for one that has none), which records their depth and size as they are now. Returns what
    /// that value then refers back to ([`Slot::back`], [`Slot::refs`]).
    ///
    /// - A list, dict or set put in by its own stack entry is finished (CPython adds every item
    ///   before it puts a container in its parent): it is marked shared, and changing it later
    ///   is refused.
    /// - A reference fetched from the memo to one not finished (CPython writes these only for
    ///   data that refers back to itself) may see it grow: the value owes it, counted in full
    ///   once the value is (at `STOP`).
    /// - What an item owes, the value owes, except to itself: inside the container an item
    ///   refers back to, every walk that reaches the reference has the container on its path
    ///   already, where `repr`, `==`, `deepcopy` and `json` stop (`l.append(l)`, or
    ///   `t = (l,); l.append(t)`).
    ///
    /// A value owing two different containers is refused (CPython writes that only for data
    /// referring back to two unfinished containers at once).
    pub(super) fn absorb(
        &mut self,
        range: core::ops::Range<usize>,
        into: u32,
    ) -> Check<(u32, u64)> {
        let (mut back, mut refs) = (0u32, 0u64);
        let mut owe = |to: u32, n: u64| {
            if back != 0 && back != to {
                return Err(Reason::TangledReferences);
            }
            back = to;
            refs = refs.saturating_add(n);
            Ok(())
        };
        for i in range {
            match self.entry_of(i) {
                Some((link, _, _)) if link == into => continue,
                Some((_, false, m)) => m.shared = true,
                Some((link, true, m)) if !m.shared => owe(link, 1)?,
                _ => {}
            }
            let (owed, n) = match self.stack.get(i) {
                Some(s) => {
                    let s = self.current(s);
                    (s.back, s.refs)
                }
                None => (0, 0),
            };
            if owed != 0 && owed != into {
                owe(owed, n)?;
            }
        }
        Ok((back, refs))
    }

    /// The entries at `range` leave the stack without being put anywhere (`POP`, `POP_MARK`): a
    /// list, dict or set whose own entry this is is finished (CPython pops one only once it
    /// holds all its items, to fetch the tuple that holds it instead), so it may not change
    /// any more and later references to it owe nothing.
    pub(super) fn finish(&mut self, range: core::ops::Range<usize>) {
        for i in range {
            if let Some((_, false, m)) = self.entry_of(i) {
                m.shared = true;
            }
        }
    }

    /// For a memoized list, dict or set at stack entry `i`: its memo link, whether the entry
    /// is a copy fetched from the memo (not its own), and its memo entry.
    fn entry_of(&mut self, i: usize) -> Option<(u32, bool, &mut Slot)> {
        let &Slot {
            kind,
            id,
            memo,
            copy,
            ..
        } = self.stack.get(i)?;
        if memo == 0 || !kind.is_mutable_container() {
            return None;
        }
        let m = self.memo.get_mut(memo as usize - 1)?;
        (m.id == id).then_some((memo, copy, m))
    }

    /// At `STOP`: the value counted in full, with what it owes to unfinished containers (and
    /// what those owe in turn), against the depth and expansion limits.
    pub(super) fn settle(&mut self) -> Check<()> {
        let top = *self.current(self.top()?);
        let (mut back, mut refs, mut depth, mut size) = (top.back, top.refs, top.depth, top.size);
        let mut hops = 0;
        while back != 0 {
            hops += 1;
            let owed = match self.memo.get(back as usize - 1) {
                Some(m) if hops <= 64 => *m,
                _ => return Err(Reason::TangledReferences),
            };
            size = size.saturating_add(refs.saturating_mul(owed.size));
            depth = depth.saturating_add(owed.depth);
            refs = refs.saturating_mul(owed.refs);
            back = if owed.back == back || (top.memo != 0 && owed.back == top.memo) {
                0
            } else {
                owed.back
            };
        }
        self.nest(depth)?;
        self.expand(size)?;
        Ok(())
    }
}
