//! MV-Register: multi-value register.

use crate::causal::{overwrite, Causal, CausalKind, DotFun};
use crate::context::CausalContext;
use crate::traits::{Element, ReplicaId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::marker::PhantomData;

/// Multi-value register: a write replaces the values it has observed; concurrent writes are all
/// kept, and the next write (having observed them) replaces them all.
pub type MvRegister<V, R> = Causal<MvRegisterKind<V>, R>;

/// The [`CausalKind`] of [`MvRegister`].
#[derive(Debug)]
pub struct MvRegisterKind<V>(PhantomData<fn() -> V>);

/// Operations of an [`MvRegister`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MvRegisterOp<V> {
    /// Write a value, replacing every value observed.
    Write(V),
}

impl<V: Element, R: ReplicaId> CausalKind<R> for MvRegisterKind<V> {
    type Store = DotFun<R, V>;
    type Op = MvRegisterOp<V>;
    type Value = BTreeSet<V>;

    fn delta_mutate(
        store: &DotFun<R, V>,
        ctx: &CausalContext<R>,
        MvRegisterOp::Write(value): &MvRegisterOp<V>,
        replica: &R,
    ) -> (DotFun<R, V>, CausalContext<R>) {
        overwrite(Some(store), ctx, replica, |dot| DotFun::single(dot, value.clone()))
    }

    fn target(_: &MvRegisterOp<V>) -> Option<&()> {
        None
    }

    fn query(store: &DotFun<R, V>) -> BTreeSet<V> {
        store.iter().map(|(_, v)| v.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::{Lattice, Query};

    #[test]
    fn keeps_concurrent_values_until_overwritten() {
        let mut a = MvRegister::<char, u8>::new();
        a.update(MvRegisterOp::Write('b'), &1);
        let mut b = a.clone();
        a.update(MvRegisterOp::Write('l'), &1);
        b.update(MvRegisterOp::Write('r'), &2);
        let mut j = a.join(&b);
        assert_eq!(j.query(), BTreeSet::from(['l', 'r']));
        j.update(MvRegisterOp::Write('f'), &3);
        assert_eq!(j.join(&a).join(&b).query(), BTreeSet::from(['f']));
    }
}
