//! Forwarding of the lattice traits for CRDTs that are newtypes over a composed lattice
//! (`GCounter` over `GMap<R, Max<u64>>`, `PnCounter` over a `Pair` of them, ...).

/// `newtype_lattice!([generics with bounds] Type<..>, Inner)` implements [`Lattice`] and
/// [`DeltaSync`] for `Type` (a tuple struct around `Inner`) by delegation.
///
/// [`Lattice`]: crate::Lattice
/// [`DeltaSync`]: crate::DeltaSync
macro_rules! newtype_lattice {
    ([$($generics:tt)*] $ty:ty, $inner:ty) => {
        impl<$($generics)*> $crate::traits::Lattice for $ty {
            fn bottom() -> Self {
                Self(<$inner as $crate::traits::Lattice>::bottom())
            }
            fn is_bottom(&self) -> bool {
                self.0.is_bottom()
            }
            fn merge(&mut self, other: &Self) {
                self.0.merge(&other.0)
            }
            fn leq(&self, other: &Self) -> bool {
                self.0.leq(&other.0)
            }
            fn join_decomposition(&self) -> Vec<Self> {
                self.0.join_decomposition().into_iter().map(Self).collect()
            }
        }

        impl<$($generics)*> $crate::traits::DeltaSync for $ty {
            type Digest = <$inner as $crate::traits::DeltaSync>::Digest;
            fn digest(&self) -> Self::Digest {
                self.0.digest()
            }
            fn delta(&self, digest: &Self::Digest) -> Self {
                Self(self.0.delta(digest))
            }
        }
    };
}

pub(crate) use newtype_lattice;
