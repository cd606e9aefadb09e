//! EW-Flag: enable-wins flag.

use super::FlagOp;
use crate::causal::{overwrite, remove_all, Causal, CausalKind, DotSet};
use crate::context::CausalContext;
use crate::traits::ReplicaId;

/// Enable-wins flag: true while some enable has not been observed by a disable, so an enable
/// concurrent with a disable wins. Starts false.
pub type EwFlag<R> = Causal<EwFlagKind, R>;

/// The [`CausalKind`] of [`EwFlag`]: the store holds the dots of unobserved enables.
#[derive(Debug)]
pub struct EwFlagKind;

impl<R: ReplicaId> CausalKind<R> for EwFlagKind {
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
            FlagOp::Enable => overwrite(Some(store), ctx, replica, DotSet::single),
            FlagOp::Disable => remove_all(Some(store)),
        }
    }

    fn target(_: &FlagOp) -> Option<&()> {
        None
    }

    fn query(store: &DotSet<R>) -> bool {
        store.iter().len() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traits::{Lattice, Query};

    #[test]
    fn concurrent_enable_wins() {
        let mut a = EwFlag::<u8>::new();
        assert!(!a.query());
        a.update(FlagOp::Enable, &1);
        let mut b = a.clone();
        a.update(FlagOp::Disable, &1);
        b.update(FlagOp::Enable, &2);
        assert!(!a.query());
        assert!(a.join(&b).query());
        // A disable that has observed both enables wins.
        let mut c = a.join(&b);
        c.update(FlagOp::Disable, &3);
        assert!(!c.join(&a).join(&b).query());
    }
}
