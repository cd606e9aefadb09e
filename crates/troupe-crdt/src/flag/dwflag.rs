//! DW-Flag: disable-wins flag.

use super::FlagOp;
use crate::causal::{overwrite, remove_all, Causal, CausalKind, DotSet};
use crate::context::CausalContext;
use crate::traits::ReplicaId;

/// Disable-wins flag, the dual of [`EwFlag`](super::EwFlag): false while some disable has not
/// been observed by an enable, so a disable concurrent with an enable wins. As in Lasp and the
/// delta-CRDT paper the store holds unobserved disables, hence the bottom state reads **true**.
pub type DwFlag<R> = Causal<DwFlagKind, R>;

/// The [`CausalKind`] of [`DwFlag`]: the store holds the dots of unobserved disables.
#[derive(Debug)]
pub struct DwFlagKind;

impl<R: ReplicaId> CausalKind<R> for DwFlagKind {
    type Store = DotSet<R>;
    type Op = FlagOp;
    type Value = bool;

    fn delta_mutate(
        store: &DotSet<R>,
        ctx: &CausalContext<R>,
        op: &FlagOp,
        replica: &R,
    ) -> (DotSet<R>, CausalContext<R>) {
        match op {
            FlagOp::Disable => overwrite(Some(store), ctx, replica, DotSet::single),
            FlagOp::Enable => remove_all(Some(store)),
        }
    }

    fn target(_: &FlagOp) -> Option<&()> {
        None
    }

    fn query(store: &DotSet<R>) -> bool {
        store.iter().len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::{Lattice, Query};

    #[test]
    fn concurrent_disable_wins() {
        let mut a = DwFlag::<u8>::new();
        assert!(a.query(), "bottom reads true");
        a.update(FlagOp::Disable, &1);
        let mut b = a.clone();
        a.update(FlagOp::Enable, &1);
        b.update(FlagOp::Disable, &2);
        assert!(a.query());
        assert!(!a.join(&b).query());
        let mut c = a.join(&b);
        c.update(FlagOp::Enable, &3);
        assert!(c.join(&a).join(&b).query());
    }
}
