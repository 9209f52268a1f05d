//! The abstract stack machine: runs the pickle opcode by opcode as CPython's unpickler would,
//! on kinds instead of objects, checking each step and accounting what the load costs (depth,
//! expanded size, allocation, hash collisions).

use super::*;

/// How one run of the machine ended, if not with a rejection (the value built is left at the
/// bottom of the stack).
pub(super) enum Run {
    Done(Validated),
    /// More keys with a chosen hash than `max_collisions`: run again with the key table (and
    /// count list items too if a list went to `set()`).
    NeedKeys {
        lists: bool,
    },
}

/// Whether a run counts collisions in the key table.
#[derive(Clone, Copy)]
pub(super) enum Keys {
    Off,
    On { lists: bool },
}

/// What every pickle may expand to beyond `max_expansion` x its length.
pub(super) const EXPANSION_SLACK: u64 = 1 << 16;

/// The value of a `LONG1`/`LONG4` argument (two's complement, little-endian) if it has at most
/// 8 bytes.
#[inline]
pub(super) fn long_small(b: &[u8]) -> Option<i64> {
    (b.len() <= 8).then(|| {
        let fill = if b.last().is_some_and(|x| x & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut w = [fill; 8];
        w.iter_mut().zip(b).for_each(|(w, b)| *w = *b);
        i64::from_le_bytes(w)
    })
}

// ------------------------------------------------------------------------------------------------
// The machine

pub(super) struct Machine<'v, 'p, 'w, 't, 'o> {
    pub(super) v: &'v Validator<'v>,
    pub(super) pickle: &'p [u8],
    pub(super) buffers: &'p [usize],
    pub(super) stack: &'w mut [Slot],
    pub(super) sp: usize,
    pub(super) stack_high: usize,
    pub(super) memo: &'w mut [Slot],
    pub(super) memo_len: usize,
    pub(super) memo_high: usize,
    pub(super) keys: &'w mut [KeySlot],
    pub(super) refused: &'w mut Option<[usize; 4]>,
    /// Whether this run counts collisions in the key table (the second run, if any).
    pub(super) use_keys: bool,
    /// ... and list items too (the first run saw a `set(list)`).
    pub(super) count_lists: bool,
    pub(super) epoch: u32,
    pub(super) keys_used: usize,
    /// Insertions of keys with a chosen hash into dicts, sets and frozensets.
    pub(super) chosen_keys: u64,
    /// Items with a chosen hash appended to lists, and whether any list went to `set()`.
    pub(super) chosen_list_items: u64,
    pub(super) set_of_list: bool,
    pub(super) used_buffers: usize,
    pub(super) arrays: usize,
    pub(super) protocol: Option<u8>,
    pub(super) frame_end: usize,
    pub(super) next_id: u64,
    pub(super) depth: u32,
    pub(super) alloc: u64,
    /// The expansion budget, and the hash work done so far (the expanded sizes of every key
    /// hashed).
    pub(super) budget: u64,
    pub(super) hash_work: u64,
    pub(super) prev: [Option<Opcode>; 2],
    pub(super) tracer: Option<&'t mut Tracer<'o>>,
    /// Notes the literals a [`Layout`] may leave free (when the workspace has a layout).
    pub(super) recorder: Option<&'t mut Recorder>,
    pub(super) at: usize,
    pub(super) op: u8,
}

/// Shorthand for the validator's internal results: a reason, turned into an error with the
/// opcode's offset at the top of the loop.
pub(super) type Check<T> = core::result::Result<T, Reason>;

impl<'v, 'p, 'w, 't, 'o> Machine<'v, 'p, 'w, 't, 'o> {
    pub(super) fn new(
        v: &'v Validator<'v>,
        pickle: &'p [u8],
        buffers: &'p [usize],
        ws: &'w mut Workspace<'_>,
        tracer: Option<&'t mut Tracer<'o>>,
        recorder: Option<&'t mut Recorder>,
        keys: Keys,
    ) -> Self {
        let recorder = recorder.map(|r| {
            *r = Recorder::new();
            r
        });
        let (use_keys, count_lists) = match keys {
            Keys::Off => (false, false),
            Keys::On { lists } => (true, lists),
        };
        let mut epoch = 0;
        if use_keys {
            // A new epoch makes every entry of earlier runs stale; on wrap-around, clear.
            if let Some(header) = ws.keys.first_mut() {
                header.count = header.count.wrapping_add(1);
                if header.count == 0 {
                    ws.keys.iter_mut().for_each(|k| *k = KeySlot::EMPTY);
                    if let Some(header) = ws.keys.first_mut() {
                        header.count = 1;
                    }
                }
                epoch = ws.keys.first().map_or(1, |h| h.count);
            }
        }
        Machine {
            v,
            pickle,
            buffers,
            stack: &mut *ws.stack,
            sp: 0,
            stack_high: 0,
            memo: &mut *ws.memo,
            memo_len: 0,
            memo_high: 0,
            keys: &mut *ws.keys,
            refused: {
                ws.refused = None;
                &mut ws.refused
            },
            use_keys,
            count_lists,
            epoch,
            keys_used: 0,
            chosen_keys: 0,
            chosen_list_items: 0,
            set_of_list: false,
            used_buffers: 0,
            arrays: 0,
            protocol: None,
            frame_end: 0,
            next_id: 1,
            depth: 0,
            alloc: 0,
            budget: (pickle.len() as u64)
                .saturating_mul(u64::from(v.limits.max_expansion))
                .saturating_add(EXPANSION_SLACK),
            hash_work: 0,
            prev: [None, None],
            tracer,
            recorder,
            at: 0,
            op: 0,
        }
    }

    pub(super) fn strict(&self) -> bool {
        self.v.profile == Profile::Strict
    }

    pub(super) fn limits(&self) -> &Limits {
        &self.v.limits
    }

    pub(super) fn reject(&self, reason: Reason) -> Error {
        Error::Rejected {
            at: self.at,
            opcode: self.op,
            reason,
        }
    }

    pub(super) fn run(mut self) -> Result<Run> {
        let result = self.run_inner();
        // Leave the memo empty for the next run (only the part this run touched).
        for slot in self.memo.iter_mut().take(self.memo_high) {
            *slot = Slot::EMPTY;
        }
        result
    }

    // ---- costs -----------------------------------------------------------------------------------

    /// Adds `bytes` to the allocation bound.
    pub(super) fn charge(&mut self, bytes: u64) -> Check<()> {
        self.alloc = self.alloc.saturating_add(bytes);
        let max = self.limits().max_alloc;
        if self.alloc > max {
            return Err(Reason::Limit {
                limit: Limit::Alloc,
                found: self.alloc,
                max,
            });
        }
        Ok(())
    }

    /// Checks a new value's nesting depth.
    pub(super) fn nest(&mut self, depth: u32) -> Check<u32> {
        let max = self.limits().max_depth;
        if depth > max {
            return Err(Reason::Limit {
                limit: Limit::Depth,
                found: u64::from(depth),
                max: u64::from(max),
            });
        }
        self.depth = self.depth.max(depth);
        Ok(depth)
    }

    /// Adds the work of hashing a value of expanded size `size` (CPython caches no tuple hash).
    pub(super) fn hash(&mut self, size: u64) -> Check<()> {
        self.hash_work = self.hash_work.saturating_add(size);
        if self.hash_work > self.budget {
            return Err(Reason::Limit {
                limit: Limit::Expansion,
                found: self.hash_work,
                max: self.budget,
            });
        }
        Ok(())
    }

    // ---- stack ---------------------------------------------------------------------------------

    pub(super) fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    #[inline(always)]
    pub(super) fn push(&mut self, kind: Kind) -> Check<()> {
        let id = self.new_id();
        let depth = match kind {
            Kind::List { .. } | Kind::Dict | Kind::Set | Kind::Array(_) | Kind::Object => 1,
            _ => 0,
        };
        let size = match kind {
            // hashing a big int walks its digits every time (CPython caches no int hash)
            Kind::BigInt(_) => 2,
            _ => 1,
        };
        self.push_slot(Slot {
            kind,
            id,
            depth,
            memo: 0,
            size,
            shared: false,
            copy: false,
            back: 0,
            refs: 0,
        })
    }

    #[inline(always)]
    pub(super) fn push_slot(&mut self, slot: Slot) -> Check<()> {
        let s = self.stack.get_mut(self.sp).ok_or(Reason::StackTooDeep)?;
        *s = slot;
        self.sp += 1;
        if self.sp > self.stack_high {
            self.stack_high = self.sp;
            self.charge(limits::cost::STACK_SLOT)?;
        }
        Ok(())
    }

    pub(super) fn top(&self) -> Check<&Slot> {
        let slot = self
            .sp
            .checked_sub(1)
            .and_then(|i| self.stack.get(i))
            .ok_or(Reason::StackUnderflow)?;
        if matches!(slot.kind, Kind::Mark) {
            return Err(Reason::MarkAsValue);
        }
        Ok(slot)
    }

    pub(super) fn top_mut(&mut self) -> Check<&mut Slot> {
        self.top()?;
        self.sp
            .checked_sub(1)
            .and_then(|i| self.stack.get_mut(i))
            .ok_or(Reason::StackUnderflow)
    }

    /// Pops the top value (as [`pop`](Self::pop) checks it) and returns where it was.
    pub(super) fn pop_at(&mut self) -> Check<usize> {
        self.top()?;
        self.sp -= 1;
        Ok(self.sp)
    }

    /// The stack entry at `i` as current as the memo knows it.
    pub(super) fn current_at(&self, i: usize) -> &Slot {
        self.stack.get(i).map_or(&Slot::EMPTY, |s| self.current(s))
    }

    pub(super) fn pop(&mut self) -> Check<Slot> {
        let slot = *self.current(self.top()?);
        self.sp -= 1;
        Ok(slot)
    }

    /// A list, dict or set as its memo copy knows it now (every mutation through any copy is
    /// written back there), so a stale copy on the stack does not hide items added elsewhere.
    #[inline]
    pub(super) fn current<'s>(&'s self, slot: &'s Slot) -> &'s Slot {
        if slot.memo == 0 {
            return slot;
        }
        // The memo copy carries the same link (`put` writes it there).
        match self.memo.get(slot.memo as usize - 1) {
            Some(m) if m.id == slot.id => m,
            _ => slot,
        }
    }

    /// Index of the topmost MARK.
    pub(super) fn mark(&self) -> Check<usize> {
        self.stack
            .get(..self.sp)
            .unwrap_or(&[])
            .iter()
            .rposition(|s| matches!(s.kind, Kind::Mark))
            .ok_or(Reason::NoMark)
    }

    /// Range of the top `n` values (none of them a MARK).
    pub(super) fn top_n(&self, n: usize) -> Check<core::ops::Range<usize>> {
        let start = self.sp.checked_sub(n).ok_or(Reason::StackUnderflow)?;
        let items = self.stack.get(start..self.sp).unwrap_or(&[]);
        if items.iter().any(|s| matches!(s.kind, Kind::Mark)) {
            return Err(Reason::MarkAsValue);
        }
        Ok(start..self.sp)
    }

    pub(super) fn items(&self, range: core::ops::Range<usize>) -> &[Slot] {
        self.stack.get(range).unwrap_or(&[])
    }

    /// The deepest of these items and their summed expanded size, each as current as the memo
    /// knows it.
    pub(super) fn items_depth(&self, range: core::ops::Range<usize>) -> (u32, u64) {
        self.items(range).iter().fold((0, 0), |(d, n), s| {
            let s = self.current(s);
            (d.max(s.depth), n.saturating_add(s.size))
        })
    }

    /// Checks a value's expanded size against the budget (`max_expansion` x pickle length +
    /// 65,536): shared references may repeat a value, but the walk over the result stays
    /// linear in the pickle.
    pub(super) fn expand(&self, size: u64) -> Check<u64> {
        if size > self.budget {
            return Err(Reason::Limit {
                limit: Limit::Expansion,
                found: size,
                max: self.budget,
            });
        }
        Ok(size)
    }

    // ---- opcodes -------------------------------------------------------------------------------

    /// A number literal was just pushed (with the newest id): tell the recorder, if any.
    #[inline]
    fn note_literal(&mut self, op: &Op<'p>) {
        if let Some(r) = self.recorder.as_deref_mut() {
            r.literal(op, self.next_id);
        }
    }

    pub(super) fn step(&mut self, op: &Op<'p>) -> Check<()> {
        // Protocol and frames.
        if op.opcode == Opcode::Proto {
            let Argument::Int(n) = op.arg else {
                return Err(Reason::BadProto);
            };
            let ok = if self.strict() {
                n == 5
            } else {
                (2..=5).contains(&n)
            };
            if op.offset != 0 || !ok {
                return Err(Reason::BadProto);
            }
            self.protocol = u8::try_from(n).ok();
            return Ok(());
        }
        if let Err(reason) = self.admit(op.opcode, op.offset, op.end) {
            if let (Reason::OpcodeNotAllowed, Opcode::Inst, Argument::Global { module, name }) =
                (reason, op.opcode, op.arg)
            {
                self.resolve(module.as_bytes(), name.as_bytes())?;
            }
            return Err(reason);
        }
        match (op.opcode, op.arg) {
            (Opcode::Frame, Argument::Uint(n)) => {
                let left = (self.pickle.len() - op.end) as u64;
                if op.offset < self.frame_end || n > left {
                    return Err(Reason::BadFrame);
                }
                self.frame_end = op.end + n as usize;
            }
            // ---- scalars
            (Opcode::None, _) => self.push(Kind::None)?,
            (Opcode::Newtrue, _) => self.push(Kind::Bool(true))?,
            (Opcode::Newfalse, _) => self.push(Kind::Bool(false))?,
            (Opcode::Binint | Opcode::Binint1 | Opcode::Binint2, Argument::Int(v)) => {
                self.charge(limits::cost::int_small(v))?;
                self.push(Kind::Int(Some(v)))?;
                self.note_literal(op);
            }
            (Opcode::Long1 | Opcode::Long4, Argument::Long(b)) => match long_small(b) {
                Some(v) => {
                    self.charge(limits::cost::int_small(v))?;
                    self.push(Kind::Int(Some(v)))?;
                    self.note_literal(op);
                }
                None => {
                    self.charge(limits::cost::int_bytes(b.len() as u64))?;
                    self.push(Kind::BigInt(hash::long(b)))?
                }
            },
            (Opcode::Binfloat, Argument::Float(f)) => {
                self.charge(limits::cost::FLOAT)?;
                self.push(Kind::Float(f.to_bits()))?;
                self.note_literal(op);
            }
            (_, Argument::Str(s)) => self.text(op.end - s.len(), s.len(), s.is_ascii())?,
            (_, Argument::StrWithSurrogates(b)) => {
                self.charge(limits::cost::str(b.len() as u64, false))?;
                self.push(Kind::Str(Span {
                    start: op.end - b.len(),
                    len: b.len(),
                    latin1: 0,
                    seed: hash::stand_in_text(b),
                }))?
            }
            (_, Argument::Bytes(b)) => {
                let span = Some(Span {
                    start: op.end - b.len(),
                    len: b.len(),
                    latin1: 0,
                    seed: 0,
                });
                self.charge(limits::cost::bytes(b.len() as u64))?;
                self.push(Kind::Bytes {
                    len: b.len() as u64,
                    span,
                })?
            }
            (_, Argument::ByteArray(b)) => {
                self.charge(limits::cost::bytearray(b.len() as u64))?;
                self.push(Kind::ByteArray {
                    len: b.len() as u64,
                })?
            }
            (Opcode::NextBuffer, _) => {
                let len = *self
                    .buffers
                    .get(self.used_buffers)
                    .ok_or(Reason::TooManyBuffers)?;
                let index = u32::try_from(self.used_buffers).map_err(|_| Reason::TooManyBuffers)?;
                self.used_buffers += 1;
                self.push(Kind::Buffer {
                    index,
                    len: len as u64,
                    readonly: false,
                })?
            }
            (Opcode::ReadonlyBuffer, _) => {
                if self.strict() && self.prev[1] != Some(Opcode::NextBuffer) {
                    return Err(Reason::ReadonlyOnNonBuffer);
                }
                match &mut self.top_mut()?.kind {
                    Kind::Buffer { readonly, .. } => *readonly = true,
                    _ => return Err(Reason::ReadonlyOnNonBuffer),
                }
                self.charge(limits::cost::MEMORYVIEW)?;
            }
            // ---- stack
            (Opcode::Mark, _) => self.push(Kind::Mark)?,
            (Opcode::Pop, _) => {
                let i = self.sp.checked_sub(1).ok_or(Reason::StackUnderflow)?;
                self.finish(i..self.sp);
                self.sp = i;
            }
            (Opcode::PopMark, _) => {
                let mark = self.mark()?;
                self.finish(mark + 1..self.sp);
                self.sp = mark;
            }
            // ---- containers
            (Opcode::EmptyTuple, _) => self.tuple(self.sp..self.sp, self.sp)?,
            (Opcode::Tuple1 | Opcode::Tuple2 | Opcode::Tuple3, _) => {
                let n = usize::from(op.opcode.byte() - Opcode::Tuple1.byte()) + 1;
                let range = self.top_n(n)?;
                self.tuple(range.clone(), range.start)?
            }
            (Opcode::Tuple, _) => {
                let mark = self.mark()?;
                self.tuple(mark + 1..self.sp, mark)?
            }
            (Opcode::Frozenset, _) => {
                let mark = self.mark()?;
                let range = mark + 1..self.sp;
                let id = self.new_id();
                let n = range.len() as u64;
                self.charge(
                    limits::cost::tuple(n)
                        .saturating_add(limits::cost::SET)
                        .saturating_add(n.saturating_mul(limits::cost::SET_ITEM)),
                )?;
                for i in range.clone() {
                    let (chosen, size) = match self.stack.get(i) {
                        Some(s) => {
                            s.kind.check_value()?;
                            if !s.kind.hashable() {
                                return Err(Reason::Unhashable);
                            }
                            (s.kind.chosen_hash(), s.size)
                        }
                        None => return Err(Reason::StackUnderflow),
                    };
                    self.key(id, chosen, size)?;
                }
                let (depth, size) = self.items_depth(range.clone());
                let depth = self.nest(depth + 1)?;
                let size = self.expand(size.saturating_add(1))?;
                self.trace_items(id, range, false);
                self.sp = mark;
                self.push_slot(Slot {
                    kind: Kind::FrozenSet,
                    id,
                    depth,
                    memo: 0,
                    size,
                    shared: false,
                    copy: false,
                    back: 0,
                    refs: 0,
                })?
            }
            (Opcode::EmptyList, _) => {
                self.charge(limits::cost::LIST)?;
                self.push(Kind::List {
                    hashable_items: true,
                    len: 0,
                    max_class: 0,
                })?
            }
            (Opcode::EmptyDict, _) => {
                self.charge(limits::cost::DICT)?;
                self.push(Kind::Dict)?
            }
            (Opcode::EmptySet, _) => {
                self.charge(limits::cost::SET)?;
                self.push(Kind::Set)?
            }
            (Opcode::Append | Opcode::Setitem, _) => {
                let (n, want) = if op.opcode == Opcode::Append {
                    (1, Want::List)
                } else {
                    (2, Want::Dict)
                };
                let range = self.top_n(n)?;
                let container = range.start.checked_sub(1).ok_or(Reason::StackUnderflow)?;
                self.add_items(range, container, want)?;
            }
            (Opcode::Appends | Opcode::Setitems | Opcode::Additems, _) => {
                let want = match op.opcode {
                    Opcode::Appends => Want::List,
                    Opcode::Setitems => Want::Dict,
                    _ => Want::Set,
                };
                let mark = self.mark()?;
                let container = mark.checked_sub(1).ok_or(Reason::StackUnderflow)?;
                self.add_items(mark + 1..self.sp, container, want)?;
            }
            // ---- memo
            (Opcode::Memoize, _) => self.put(self.memo_len)?,
            (Opcode::Binput | Opcode::LongBinput, Argument::Int(i)) => {
                self.put(usize::try_from(i).map_err(|_| Reason::MemoTooLarge)?)?
            }
            (Opcode::Binget | Opcode::LongBinget, Argument::Int(i)) => {
                let i = usize::try_from(i).map_err(|_| Reason::MemoTooLarge)?;
                let slot = *self.memo.get(i).ok_or(Reason::MemoTooLarge)?;
                match slot.kind {
                    Kind::Empty => return Err(Reason::MemoMissing),
                    Kind::DtypeNew { .. } | Kind::ArrayNew { .. } => {
                        return Err(Reason::MemoAliasing)
                    }
                    Kind::Global(_) => {}
                    _ if self.strict() => return Err(Reason::OpcodeNotAllowed),
                    _ => {}
                }
                let slot = Slot {
                    copy: true,
                    ..*self.current(&slot)
                };
                self.push_slot(slot)?
            }
            // ---- globals and calls
            (Opcode::Global, Argument::Global { module, name }) => {
                let callee = self.resolve(module.as_bytes(), name.as_bytes())?;
                self.push(Kind::Global(callee))?
            }
            (Opcode::StackGlobal, _) => {
                let range = self.top_n(2)?;
                let [Slot {
                    kind: Kind::Str(module),
                    ..
                }, Slot {
                    kind: Kind::Str(name),
                    ..
                }] = self.items(range.clone())
                else {
                    return Err(Reason::GlobalNotLiteral);
                };
                let (module, name) = (*module, *name);
                let is_literal = |o: Option<Opcode>| {
                    matches!(
                        o,
                        Some(Opcode::ShortBinunicode | Opcode::Binunicode | Opcode::Binunicode8)
                    )
                };
                if self.strict() && !(is_literal(self.prev[0]) && is_literal(self.prev[1])) {
                    return Err(Reason::GlobalNotLiteral);
                }
                let callee = self.resolve(module.bytes(self.pickle), name.bytes(self.pickle))?;
                self.sp = range.start;
                self.push(Kind::Global(callee))?
            }
            (Opcode::Reduce, _) => {
                let args = self.pop()?;
                // set(list): the list's depth is the set's (its items are the set's).
                let args_depth = args.depth.saturating_sub(1);
                let args_size = args.size.saturating_sub(1);
                let callable = self.pop()?;
                let Kind::Tuple(args) = args.kind else {
                    return Err(Reason::BadCallArguments);
                };
                let Kind::Global(callee) = callable.kind else {
                    return Err(Reason::NotCallable);
                };
                let kind = self.call(callee, &args)?;
                match args.class {
                    // set(list) keeps the list's id so the summary lists the list's items, and
                    // the collision counts of its items go on in the set.
                    Class::ListArg(_, id, _, _) if matches!(kind, Kind::Set | Kind::FrozenSet) => {
                        // every item of the list is hashed into the set
                        self.hash(args_size.saturating_sub(1))?;
                        self.push_slot(Slot {
                            kind,
                            id,
                            depth: args_depth.max(1),
                            memo: 0,
                            size: args_size.max(1),
                            shared: false,
                            copy: false,
                            back: 0,
                            refs: 0,
                        })?
                    }
                    _ => {
                        let depth = match kind {
                            Kind::Array(_) | Kind::Object | Kind::Set | Kind::FrozenSet => 1,
                            _ => 0,
                        };
                        let id = self.new_id();
                        self.push_slot(Slot {
                            kind,
                            id,
                            depth,
                            memo: 0,
                            size: 1,
                            shared: false,
                            copy: false,
                            back: 0,
                            refs: 0,
                        })?
                    }
                }
            }
            (Opcode::Newobj, _) => {
                // Popped in place (a Slot is large): the entries stay readable above `sp`.
                let args_at = self.pop_at()?;
                let cls_at = self.pop_at()?;
                let args = self.current_at(args_at);
                let Kind::Tuple(args) = &args.kind else {
                    return Err(Reason::BadCallArguments);
                };
                let kind = match (&self.current_at(cls_at).kind, &args.class) {
                    (Kind::Global(Callee::Ndarray), Class::NdarrayArgs(info)) => {
                        let info = (*info)?;
                        self.arrays += 1;
                        self.charge(
                            limits::cost::array(u64::from(info.shape.len))
                                .saturating_add(limits::cost::DTYPE),
                        )?;
                        Kind::Array(info)
                    }
                    (Kind::Global(Callee::Custom), _) => Kind::Object,
                    (Kind::Global(_), _) => return Err(Reason::BadCallArguments),
                    _ => return Err(Reason::NotCallable),
                };
                self.push(kind)?
            }
            (Opcode::Build, _) => {
                let state = self.pop()?;
                let target = *self.top()?;
                let built = match (target.kind, state.kind) {
                    (
                        Kind::DtypeNew { code, .. },
                        Kind::Tuple(Tuple {
                            class: Class::DtypeState(order),
                            ..
                        }),
                    ) => {
                        let order = order?;
                        let order = match order {
                            Some(true) if code.itemsize() > 1 => ByteOrder::Big,
                            Some(false) if code.itemsize() > 1 => ByteOrder::Little,
                            None if code.itemsize() == 1 => ByteOrder::Little,
                            _ => return Err(Reason::DtypeNotAllowed),
                        };
                        Kind::Dtype(DType::new(code, order))
                    }
                    (
                        Kind::ArrayNew { .. },
                        Kind::Tuple(Tuple {
                            class: Class::ArrayState(info),
                            ..
                        }),
                    ) => {
                        let info = info?;
                        self.arrays += 1;
                        // array_setstate copies (and byte-swaps) the bytes.
                        self.charge(nbytes(&info.dtype, &info.shape)?)?;
                        Kind::Array(info)
                    }
                    (Kind::Object, k) => {
                        k.check_value()?;
                        Kind::Object
                    }
                    _ => return Err(Reason::BadBuild),
                };
                if let Kind::DtypeNew { memo: Some(m), .. } | Kind::ArrayNew { memo: Some(m) } =
                    target.kind
                {
                    if let Some(slot) = self.memo.get_mut(m) {
                        if slot.id == target.id {
                            slot.kind = built;
                        }
                    }
                }
                self.top_mut()?.kind = built;
            }
            _ => return Err(Reason::OpcodeNotAllowed),
        }
        Ok(())
    }

    pub(super) fn stop(&mut self, op: &Op<'p>) -> Check<()> {
        if self.protocol.is_none() {
            return Err(Reason::BadProto);
        }
        if self.sp != 1 {
            return Err(Reason::NotOneValue);
        }
        self.top()
            .map_err(|_| Reason::NotOneValue)?
            .kind
            .check_value()?;
        self.settle()?;
        if op.end != self.pickle.len() {
            return Err(Reason::TrailingData);
        }
        if self.used_buffers != self.buffers.len() {
            return Err(Reason::UnusedBuffers);
        }
        Ok(())
    }

    /// The callee `module.name` names (UTF-8 bytes the reader proved), if allowed.
    pub(super) fn resolve(&mut self, module: &[u8], name: &[u8]) -> Check<Callee> {
        let is = |(m, n): (&str, &str)| m.as_bytes() == module && n.as_bytes() == name;
        let builtin = GLOBALS
            .iter()
            .find(|(m, n, _, strict)| is((m, n)) && (*strict || !self.strict()));
        if let Some((m, _, callee, _)) = builtin {
            // CPython maps `__builtin__` to `builtins` only below protocol 3 (`fix_imports`);
            // above, `find_class` would import a module called `__builtin__` from `sys.path`.
            if self.protocol.is_some_and(|p| p >= 3) && PYTHON2_MODULES.contains(m) {
                return Err(Reason::Python2Global);
            }
            return Ok(*callee);
        }
        if self.v.extra.iter().any(|(m, n)| is((m, n))) {
            return Ok(Callee::Custom);
        }
        // Both texts are slices of the pickle: remember where, for the caller's message.
        let at = |s: &[u8]| (s.as_ptr() as usize).wrapping_sub(self.pickle.as_ptr() as usize);
        *self.refused = Some([at(module), module.len(), at(name), name.len()]);
        Err(Reason::GlobalNotAllowed)
    }

    pub(super) fn put(&mut self, index: usize) -> Check<()> {
        let top = *self.current(self.top()?);
        if let Some(r) = self.recorder.as_deref_mut() {
            r.memoized(top.id);
        }
        if index >= self.memo.len() {
            return Err(Reason::MemoTooLarge);
        }
        let mut kind = top.kind;
        if self.strict() && !matches!(kind, Kind::Global(_)) {
            return Err(Reason::OpcodeNotAllowed);
        }
        match &mut kind {
            Kind::DtypeNew { memo, .. } | Kind::ArrayNew { memo } => {
                if memo.is_some() {
                    return Err(Reason::MemoAliasing);
                }
                *memo = Some(index);
                self.top_mut()?.kind = kind;
            }
            _ => {}
        }
        // A list, dict or set is linked to its one memo entry: every copy of it writes its
        // mutations back there and reads them from there. So it is memoized once, and that
        // entry is never overwritten (CPython does neither): a second entry, or a copy whose
        // entry was replaced, would keep a state older than the container's.
        let mut link = top.memo;
        if kind.is_mutable_container() {
            if link != 0 {
                return Err(Reason::MemoAliasing);
            }
            link = u32::try_from(index + 1).map_err(|_| Reason::MemoTooLarge)?;
        }
        if self
            .memo
            .get(index)
            .is_some_and(|m| m.kind.is_mutable_container())
        {
            return Err(Reason::MemoOverwritten);
        }
        if link != top.memo {
            self.top_mut()?.memo = link;
        }
        let slot = self.memo.get_mut(index).ok_or(Reason::MemoTooLarge)?;
        if matches!(slot.kind, Kind::Empty) {
            self.memo_len += 1;
        }
        *slot = Slot {
            kind,
            memo: link,
            ..top
        };
        if index + 1 > self.memo_high {
            let grown = (index + 1 - self.memo_high) as u64;
            self.memo_high = index + 1;
            self.charge(grown.saturating_mul(limits::cost::MEMO_SLOT))?;
        }
        Ok(())
    }

    pub(super) fn trace_items(&mut self, target: u64, range: core::ops::Range<usize>, pairs: bool) {
        let Some(tracer) = self.tracer.as_deref_mut() else {
            return;
        };
        if tracer.target != target {
            return;
        }
        let items = self.stack.get(range).unwrap_or(&[]);
        if pairs {
            for pair in items.chunks(2) {
                if let [k, v] = pair {
                    tracer.item(self.pickle, Some(&k.kind), &v.kind);
                }
            }
        } else {
            for s in items {
                tracer.item(self.pickle, None, &s.kind);
            }
        }
    }

    /// APPEND(S), SETITEM(S), ADDITEMS: the items are `range`, the container is at
    /// `container` (right below them, or below their MARK). Leaves the container on top.
    pub(super) fn add_items(
        &mut self,
        range: core::ops::Range<usize>,
        container_at: usize,
        want: Want,
    ) -> Check<()> {
        // The container as the memo knows it now (read in place: a Slot is large).
        let on_stack = self.stack.get(container_at).ok_or(Reason::StackUnderflow)?;
        let pairs = want == Want::Dict;
        let n = range.len() as u64;
        if pairs && !n.is_multiple_of(2) {
            return Err(Reason::OddItems);
        }
        let container = self.current(on_stack);
        let list = match (container.kind, want) {
            (
                Kind::List {
                    hashable_items,
                    len,
                    max_class,
                },
                Want::List,
            ) => Some((hashable_items, len, max_class)),
            (Kind::Dict, Want::Dict) | (Kind::Set, Want::Set) => None,
            (Kind::Mark, _) => return Err(Reason::MarkAsValue),
            _ => return Err(Reason::WrongContainer),
        };
        if container.shared {
            return Err(Reason::ChangedAfterShared);
        }
        let (id, link, mut depth, mut size, owes, owed_refs) = (
            container.id,
            container.memo,
            container.depth,
            container.size,
            container.back,
            container.refs,
        );
        self.charge(match want {
            Want::List => n.saturating_mul(limits::cost::LIST_ITEM),
            Want::Dict => (n / 2).saturating_mul(limits::cost::DICT_ITEM),
            Want::Set => n
                .saturating_mul(limits::cost::SET_ITEM)
                .saturating_add(limits::cost::tuple(n)),
        })?;
        let mut hashable_all = true;
        let mut max_class = 0;
        for i in range.clone() {
            let (hashable, chosen, size) = match self.stack.get(i) {
                Some(s) => {
                    s.kind.check_value()?;
                    (s.kind.hashable(), s.kind.chosen_hash(), s.size)
                }
                None => return Err(Reason::StackUnderflow),
            };
            let key = want == Want::Set || (pairs && (i - range.start).is_multiple_of(2));
            if pairs && !key {
                if let (Some(r), Some(s)) = (self.recorder.as_deref_mut(), self.stack.get(i)) {
                    r.dict_value(s.id);
                }
            }
            if key {
                if !hashable {
                    return Err(Reason::Unhashable);
                }
                self.key(id, chosen, size)?;
            }
            if want == Want::List {
                hashable_all &= hashable;
                if let Some(hash) = chosen {
                    self.chosen_list_items += 1;
                    if self.use_keys && self.count_lists {
                        max_class = max_class.max(self.count_key(id, hash)?);
                    }
                }
            }
        }
        let list = list.map(|(hashable_items, len, m)| Kind::List {
            hashable_items: hashable_items && hashable_all,
            len: len.saturating_add(n),
            max_class: m.max(max_class),
        });
        if n > 0 {
            let (items_depth, items_size) = self.items_depth(range.clone());
            depth = self.nest(depth.max(items_depth.saturating_add(1)))?;
            size = self.expand(size.saturating_add(items_size))?;
        }
        let (owed, n) = self.absorb(range.clone(), link)?;
        let (back, refs) = match (owes, owed) {
            (_, 0) => (owes, owed_refs),
            (0, _) => (owed, n),
            (b, o) if b == o => (b, owed_refs.saturating_add(n)),
            _ => return Err(Reason::TangledReferences),
        };
        self.trace_items(id, range, pairs);
        // Write the new state to the stack copy (which keeps its own memo link) and to the memo
        // copy it is linked to: the same container, so only what changed is written.
        let update = |s: &mut Slot| {
            if let Some(kind) = list {
                s.kind = kind;
            }
            s.depth = depth;
            s.size = size;
            s.back = back;
            s.refs = refs;
        };
        if let Some(s) = self.stack.get_mut(container_at) {
            update(s);
        }
        if link != 0 {
            if let Some(m) = self.memo.get_mut(link as usize - 1) {
                if m.id == id {
                    update(m);
                }
            }
        }
        self.sp = container_at + 1;
        Ok(())
    }

    pub(super) fn tuple(&mut self, range: core::ops::Range<usize>, new_sp: usize) -> Check<()> {
        let items = self.items(range.clone());
        let class = classify(self, items);
        // Only the argument tuples of numpy's constructors may hold a global or a dtype, and
        // only where those constructors take them.
        let special = match class {
            Class::ReconstructArgs => Some(0),
            Class::FromBufferArgs(_) => Some(1),
            Class::ArrayState(_) => Some(2),
            Class::ScalarArgs(_) => Some(0),
            _ => None,
        };
        let mut hasher = hash::TupleHasher::new();
        let mut hashable = true;
        for (i, s) in items.iter().enumerate() {
            if Some(i) != special {
                s.kind.check_value()?;
            }
            hashable &= s.kind.hashable();
            // Once an item is unhashable the tuple's hash is `Random` whatever follows.
            if hashable {
                hasher.item(s.kind.lane(self.pickle));
            }
        }
        let tuple = Tuple {
            len: items.len(),
            hashable,
            hash: if hashable {
                hasher.finish()
            } else {
                Hash::Random
            },
            class,
        };
        let (depth, size) = self.items_depth(range.clone());
        let depth = if range.is_empty() {
            0
        } else {
            self.nest(depth.saturating_add(1))?
        };
        let size = self.expand(size.saturating_add(1))?;
        self.charge(limits::cost::tuple(range.len() as u64))?;
        let id = self.new_id();
        let (back, refs) = self.absorb(range.clone(), 0)?;
        self.trace_items(id, range, false);
        self.sp = new_sp;
        self.push_slot(Slot {
            kind: Kind::Tuple(tuple),
            id,
            depth,
            memo: 0,
            size,
            shared: false,
            copy: false,
            back,
            refs,
        })
    }

    pub(super) fn call(&mut self, callee: Callee, args: &Tuple) -> Check<Kind> {
        use limits::cost;
        Ok(match (callee, args.class) {
            (Callee::Complex, Class::Numbers(h)) => {
                self.charge(cost::COMPLEX)?;
                Kind::Complex(h?)
            }
            (Callee::Complex, Class::Ints(d)) if (1..=2).contains(&d.len) => {
                self.charge(cost::COMPLEX)?;
                let part = |v: Option<&i64>| hash::float(v.map_or(0.0, |v| *v as f64));
                let s = d.as_slice();
                Kind::Complex(match (part(s.first()), part(s.get(1))) {
                    (Some(re), Some(im)) => Hash::Known(hash::complex(re, im)),
                    _ => Hash::Random,
                })
            }
            (Callee::Set | Callee::FrozenSet, Class::ListArg(hashable, _, len, max_class)) => {
                if !hashable {
                    return Err(Reason::Unhashable);
                }
                self.set_of_list = true;
                self.collisions(max_class)?;
                self.charge(cost::SET.saturating_add(len.saturating_mul(cost::SET_ITEM)))?;
                if callee == Callee::Set {
                    Kind::Set
                } else {
                    Kind::FrozenSet
                }
            }
            (Callee::Set, _) if args.len == 0 => {
                self.charge(cost::SET)?;
                Kind::Set
            }
            (Callee::FrozenSet, _) if args.len == 0 => Kind::FrozenSet,
            (Callee::Bytes, _) if args.len == 0 => Kind::Bytes { len: 0, span: None },
            (Callee::ByteArray, _) if args.len == 0 => {
                self.charge(cost::bytearray(0))?;
                Kind::ByteArray { len: 0 }
            }
            (Callee::ByteArray, Class::BytesArg(len)) => {
                self.charge(cost::bytearray(len))?;
                Kind::ByteArray { len }
            }
            (Callee::CodecsEncode, Class::EncodeArgs(span)) => {
                // Only text that latin-1 can encode (else UnicodeEncodeError); a str with
                // lone surrogates is never latin-1.
                let len = span.latin1.checked_sub(1).ok_or(Reason::BadCallArguments)?;
                self.charge(cost::bytes(len))?;
                // ASCII text is its own latin-1 bytes: the span stays usable as bytes.
                let ascii = len == span.len as u64;
                Kind::Bytes {
                    len,
                    span: ascii.then_some(Span { latin1: 0, ..span }),
                }
            }
            (Callee::Dtype, Class::DtypeArgs(code)) => {
                self.charge(cost::DTYPE)?;
                Kind::DtypeNew {
                    code: code?,
                    memo: None,
                }
            }
            (Callee::FromBuffer, Class::FromBufferArgs(info)) => {
                let info = info?;
                self.arrays += 1;
                // frombuffer(...) and its .reshape(...): two array objects.
                self.charge(cost::array(u64::from(info.shape.len)).saturating_mul(2))?;
                Kind::Array(info)
            }
            (Callee::Scalar, Class::ScalarArgs(scalar)) => {
                let scalar = scalar?;
                self.charge(cost::SCALAR)?;
                Kind::NumpyScalar(scalar)
            }
            (Callee::Reconstruct, Class::ReconstructArgs) => {
                self.charge(cost::array(1))?;
                Kind::ArrayNew { memo: None }
            }
            (Callee::Custom, _) => Kind::Object,
            (Callee::Dtype, _) => return Err(Reason::DtypeNotAllowed),
            _ => return Err(Reason::BadCallArguments),
        })
    }
}
