//! `Subject` for every CRDT type (and a few nestings): operation decoders and sequential specs.

use super::{choose, Rep, Subject, REPLICAS};
use std::collections::{BTreeMap, BTreeSet};
use troupe_crdt::*;

/// A small number below `n` from a code.
fn small(code: u32, n: u32) -> u64 {
    u64::from(code % n)
}

/// An add (`true`) or remove of one of 4 elements.
pub fn set_op(code: u32) -> (bool, u8) {
    let (kind, e) = choose(code, 2);
    (kind == 0, (e % 4) as u8)
}

impl Subject for GCounter<Rep> {
    fn op(code: u32) -> GCounterOp {
        GCounterOp::Increment(small(code, 4))
    }
    fn expected(before: &u64, GCounterOp::Increment(n): &GCounterOp) -> Option<u64> {
        Some(before + n)
    }
}

impl Subject for PnCounter<Rep> {
    fn op(code: u32) -> PnCounterOp {
        match choose(code, 2) {
            (0, n) => PnCounterOp::Increment(small(n, 4)),
            (_, n) => PnCounterOp::Decrement(small(n, 4)),
        }
    }
    fn expected(before: &i64, op: &PnCounterOp) -> Option<i64> {
        Some(match *op {
            PnCounterOp::Increment(n) => before + n as i64,
            PnCounterOp::Decrement(n) => before - n as i64,
        })
    }
}

impl Subject for BoundedCounter<Rep> {
    fn op(code: u32) -> BoundedCounterOp<Rep> {
        match choose(code, 3) {
            (0, n) => BoundedCounterOp::Increment(small(n, 5)),
            (1, n) => BoundedCounterOp::Decrement(small(n, 4)),
            (_, n) => {
                let (to, amount) = choose(n, REPLICAS as u32);
                BoundedCounterOp::Transfer { to: to as Rep, amount: small(amount, 4) }
            }
        }
    }
    fn expected(before: &i64, op: &BoundedCounterOp<Rep>) -> Option<i64> {
        Some(match *op {
            BoundedCounterOp::Increment(n) => before + n as i64,
            BoundedCounterOp::Decrement(n) => before - n as i64,
            BoundedCounterOp::Transfer { .. } => *before,
        })
    }
    fn check_post(before: &Self, op: &BoundedCounterOp<Rep>, after: &Self) -> Result<(), String> {
        let want = Self::expected(&before.value(), op).unwrap_or_default();
        // (Non-negativity needs causal delivery; the histories here forward lone deltas, so it
        // is checked in semantics.rs with full-state syncs.)
        if after.value() != want {
            return Err(format!("{op:?}: value {} expected {want}", after.value()));
        }
        Ok(())
    }
}

impl Subject for LexCounter<Rep> {
    fn op(code: u32) -> LexCounterOp {
        match choose(code, 2) {
            (0, n) => LexCounterOp::Increment(small(n, 4)),
            (_, n) => LexCounterOp::Decrement(small(n, 4)),
        }
    }
    fn expected(before: &i64, op: &LexCounterOp) -> Option<i64> {
        Some(match *op {
            LexCounterOp::Increment(n) => before + n as i64,
            LexCounterOp::Decrement(n) => before - n as i64,
        })
    }
}

impl Subject for MaxInt {
    fn op(code: u32) -> MaxIntOp {
        match choose(code, 2) {
            (0, _) => MaxIntOp::Increment,
            (_, n) => MaxIntOp::Raise(small(n, 8)),
        }
    }
    fn expected(before: &u64, op: &MaxIntOp) -> Option<u64> {
        Some(match *op {
            MaxIntOp::Increment => before + 1,
            MaxIntOp::Raise(n) => n.max(*before),
        })
    }
}

impl Subject for GSet<u8> {
    fn op(code: u32) -> GSetOp<u8> {
        GSetOp::Add((code % 6) as u8)
    }
    fn expected(before: &BTreeSet<u8>, GSetOp::Add(e): &GSetOp<u8>) -> Option<BTreeSet<u8>> {
        let mut v = before.clone();
        v.insert(*e);
        Some(v)
    }
}

impl Subject for TwoPSet<u8> {
    fn op(code: u32) -> TwoPSetOp<u8> {
        match choose(code, 2) {
            (0, e) => TwoPSetOp::Add((e % 5) as u8),
            (_, e) => TwoPSetOp::Remove((e % 5) as u8),
        }
    }
    fn expected(before: &BTreeSet<u8>, op: &TwoPSetOp<u8>) -> Option<BTreeSet<u8>> {
        match op {
            TwoPSetOp::Add(_) => None, // present unless removed before: not visible in the value
            TwoPSetOp::Remove(e) => {
                let mut v = before.clone();
                v.remove(e);
                Some(v)
            }
        }
    }
    fn check_post(before: &Self, op: &TwoPSetOp<u8>, after: &Self) -> Result<(), String> {
        let (b, a) = (before.query(), after.query());
        let ok = match op {
            TwoPSetOp::Add(e) => a.is_superset(&b) && a.difference(&b).all(|x| x == e),
            TwoPSetOp::Remove(e) => {
                let mut want = b.clone();
                want.remove(e);
                a == want
            }
        };
        ok.then_some(()).ok_or_else(|| format!("{op:?}: {b:?} -> {a:?}"))
    }
}

fn set_expected(before: &BTreeSet<u8>, add: bool, e: u8) -> BTreeSet<u8> {
    let mut v = before.clone();
    if add {
        v.insert(e);
    } else {
        v.remove(&e);
    }
    v
}

impl Subject for OrSet<u8, Rep> {
    fn op(code: u32) -> OrSetOp<u8> {
        match set_op(code) {
            (true, e) => OrSetOp::Add(e),
            (false, e) => OrSetOp::Remove(e),
        }
    }
    fn expected(before: &BTreeSet<u8>, op: &OrSetOp<u8>) -> Option<BTreeSet<u8>> {
        Some(match *op {
            OrSetOp::Add(e) => set_expected(before, true, e),
            OrSetOp::Remove(e) => set_expected(before, false, e),
        })
    }
}

impl Subject for AwSet<u8, Rep> {
    fn op(code: u32) -> AwSetOp<u8> {
        match set_op(code) {
            (true, e) => AwSetOp::Add(e),
            (false, e) => AwSetOp::Remove(e),
        }
    }
    fn expected(before: &BTreeSet<u8>, op: &AwSetOp<u8>) -> Option<BTreeSet<u8>> {
        Some(match *op {
            AwSetOp::Add(e) => set_expected(before, true, e),
            AwSetOp::Remove(e) => set_expected(before, false, e),
        })
    }
}

impl Subject for LwwRegister<u8, Rep> {
    fn op(code: u32) -> LwwOp<u8> {
        let (value, rest) = choose(code, 4);
        LwwOp::Set { value: value as u8, timestamp: small(rest, 6) }
    }
    fn expected(_: &Option<u8>, _: &LwwOp<u8>) -> Option<Option<u8>> {
        None
    }
    fn check_post(before: &Self, LwwOp::Set { value, timestamp }: &LwwOp<u8>, after: &Self) -> Result<(), String> {
        let newer = before.winner().is_none_or(|w| *timestamp > w.timestamp);
        let older = before.winner().is_some_and(|w| *timestamp < w.timestamp);
        let got = after.query();
        let ok = if newer {
            got == Some(*value)
        } else if older {
            got == before.query()
        } else {
            got == Some(*value) || got == before.query()
        };
        ok.then_some(()).ok_or_else(|| format!("set {value}@{timestamp}: got {got:?}"))
    }
}

impl Subject for MvRegister<u8, Rep> {
    fn op(code: u32) -> MvRegisterOp<u8> {
        MvRegisterOp::Write((code % 4) as u8)
    }
    fn expected(_: &BTreeSet<u8>, MvRegisterOp::Write(v): &MvRegisterOp<u8>) -> Option<BTreeSet<u8>> {
        Some(BTreeSet::from([*v]))
    }
}

impl Subject for IVar<u8> {
    fn op(code: u32) -> IVarOp<u8> {
        IVarOp::Set((code % 3) as u8)
    }
    fn expected(_: &Option<u8>, IVarOp::Set(v): &IVarOp<u8>) -> Option<Option<u8>> {
        Some(Some(*v))
    }
}

fn flag_op(code: u32) -> FlagOp {
    if code % 2 == 0 {
        FlagOp::Enable
    } else {
        FlagOp::Disable
    }
}

impl Subject for EwFlag<Rep> {
    fn op(code: u32) -> FlagOp {
        flag_op(code)
    }
    fn expected(_: &bool, op: &FlagOp) -> Option<bool> {
        Some(*op == FlagOp::Enable)
    }
}

impl Subject for DwFlag<Rep> {
    fn op(code: u32) -> FlagOp {
        flag_op(code)
    }
    fn expected(_: &bool, op: &FlagOp) -> Option<bool> {
        Some(*op == FlagOp::Enable)
    }
}

impl Subject for Boolean {
    fn op(_: u32) -> BooleanOp {
        BooleanOp::True
    }
    fn expected(_: &bool, _: &BooleanOp) -> Option<bool> {
        Some(true)
    }
}

impl<A: Subject, B: Subject> Subject for Pair<A, B> {
    fn op(code: u32) -> PairOp<A::Op, B::Op> {
        match choose(code, 2) {
            (0, c) => PairOp::First(A::op(c)),
            (_, c) => PairOp::Second(B::op(c)),
        }
    }
    fn expected((a, b): &(A::Value, B::Value), op: &PairOp<A::Op, B::Op>) -> Option<(A::Value, B::Value)> {
        match op {
            PairOp::First(op) => Some((A::expected(a, op)?, b.clone())),
            PairOp::Second(op) => Some((a.clone(), B::expected(b, op)?)),
        }
    }
}

/// Expected value of a map after operating on `key`: the value type's spec at that key, with a
/// missing key read as the value of bottom.
fn map_expected<V: Subject>(
    before: &BTreeMap<u8, V::Value>,
    key: u8,
    op: Option<&V::Op>,
) -> Option<BTreeMap<u8, V::Value>> {
    let mut map = before.clone();
    let bottom = V::bottom().query();
    let current = map.remove(&key).unwrap_or_else(|| bottom.clone());
    let next = match op {
        Some(op) => V::expected(&current, op)?,
        None => bottom.clone(),
    };
    if next != bottom {
        map.insert(key, next);
    }
    Some(map)
}

/// Map values equal up to entries holding the value of bottom.
fn same_map<V: Subject>(a: &BTreeMap<u8, V::Value>, b: &BTreeMap<u8, V::Value>) -> bool {
    let bottom = V::bottom().query();
    let strip = |m: &BTreeMap<u8, V::Value>| -> Vec<(u8, V::Value)> {
        m.iter().filter(|(_, v)| **v != bottom).map(|(k, v)| (*k, v.clone())).collect()
    };
    strip(a) == strip(b)
}

impl<V: Subject> Subject for GMap<u8, V> {
    fn op(code: u32) -> GMapOp<u8, V::Op> {
        let (k, c) = choose(code, 3);
        GMapOp::Apply(k as u8, V::op(c))
    }
    fn expected(
        before: &BTreeMap<u8, V::Value>,
        GMapOp::Apply(k, op): &GMapOp<u8, V::Op>,
    ) -> Option<BTreeMap<u8, V::Value>> {
        map_expected::<V>(before, *k, Some(op))
    }
    fn same_value(a: &Self::Value, b: &Self::Value) -> bool {
        same_map::<V>(a, b)
    }
}

impl<VK> Subject for AwMap<u8, Causal<VK, Rep>, Rep>
where
    VK: CausalKind<Rep>,
    Causal<VK, Rep>: Subject + Query<Value = VK::Value> + Mutate<Rep, Op = VK::Op>,
{
    fn op(code: u32) -> AwMapOp<u8, VK::Op> {
        let (kind, rest) = choose(code, 5);
        let (k, c) = choose(rest, 3);
        match kind {
            4 => AwMapOp::Remove(k as u8),
            _ => AwMapOp::Apply(k as u8, <Causal<VK, Rep>>::op(c)),
        }
    }
    fn expected(before: &Self::Value, op: &AwMapOp<u8, VK::Op>) -> Option<Self::Value> {
        match op {
            AwMapOp::Apply(k, op) => map_expected::<Causal<VK, Rep>>(before, *k, Some(op)),
            AwMapOp::Remove(k) => map_expected::<Causal<VK, Rep>>(before, *k, None),
        }
    }
    fn same_value(a: &Self::Value, b: &Self::Value) -> bool {
        same_map::<Causal<VK, Rep>>(a, b)
    }
}

impl Subject for MvMap<u8, u8, Rep> {
    fn op(code: u32) -> MvMapOp<u8, u8> {
        let (kind, rest) = choose(code, 4);
        let (k, v) = choose(rest, 3);
        match kind {
            3 => MvMapOp::Remove(k as u8),
            _ => MvMapOp::Set(k as u8, (v % 3) as u8),
        }
    }
    fn expected(before: &BTreeMap<u8, BTreeSet<u8>>, op: &MvMapOp<u8, u8>) -> Option<BTreeMap<u8, BTreeSet<u8>>> {
        let mut map = before.clone();
        match op {
            MvMapOp::Set(k, v) => map.insert(*k, BTreeSet::from([*v])),
            MvMapOp::Remove(k) => map.remove(k),
        };
        Some(map)
    }
}
