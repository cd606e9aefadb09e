//! A set of dots: the store of flags, and the per-element store of add-wins sets.

use super::store::DotStore;
use crate::codec::{decode_dot, ReplicaTable, WireDot};
use crate::context::{CausalContext, Dot};
use crate::error::CodecError;
use crate::traits::ReplicaId;

/// A set of dots, kept as a sorted vector (usually one or two dots).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DotSet<R>(Vec<Dot<R>>);

impl<R> Default for DotSet<R> {
    fn default() -> Self {
        DotSet(Vec::new())
    }
}

impl<R: ReplicaId> DotSet<R> {
    /// The set holding just `dot`.
    pub fn single(dot: Dot<R>) -> Self {
        DotSet(vec![dot])
    }

    /// The dots, ascending.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Dot<R>> + '_ {
        self.0.iter()
    }

    /// Whether `dot` is in the set.
    pub fn contains(&self, dot: &Dot<R>) -> bool {
        self.0.binary_search(dot).is_ok()
    }
}

impl<R: ReplicaId> DotStore<R> for DotSet<R> {
    type Key = ();
    type Wire = Vec<WireDot>;

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(&Dot<R>)) {
        self.0.iter().for_each(f);
    }

    fn join(&mut self, ctx: &CausalContext<R>, other: &Self, other_ctx: &CausalContext<R>, _scan: bool) {
        let (a, b) = (&self.0, &other.0);
        let mut out = Vec::with_capacity(a.len().max(b.len()));
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x == y => {
                    out.push(x.clone());
                    i += 1;
                    j += 1;
                }
                (Some(x), y) if y.is_none_or(|y| x < y) => {
                    if !other_ctx.contains(x) {
                        out.push(x.clone());
                    }
                    i += 1;
                }
                (_, Some(y)) => {
                    if !ctx.contains(y) {
                        out.push(y.clone());
                    }
                    j += 1;
                }
                (_, None) => break,
            }
        }
        self.0 = out;
    }

    fn retain_dots(&mut self, keep: &mut dyn FnMut(&Dot<R>) -> bool) {
        self.0.retain(|d| keep(d));
    }

    fn split(&self) -> Vec<(Dot<R>, Self)> {
        self.0.iter().map(|d| (d.clone(), DotSet::single(d.clone()))).collect()
    }

    fn to_wire(&self, table: &ReplicaTable<'_, R>) -> Result<Self::Wire, CodecError> {
        self.0.iter().map(|d| table.encode(d)).collect()
    }

    fn from_wire(wire: Self::Wire, replicas: &[R]) -> Result<Self, CodecError> {
        let mut dots = wire.into_iter().map(|w| decode_dot(w, replicas)).collect::<Result<Vec<_>, _>>()?;
        dots.sort_unstable();
        dots.dedup();
        Ok(DotSet(dots))
    }
}

impl<R: ReplicaId> FromIterator<Dot<R>> for DotSet<R> {
    fn from_iter<I: IntoIterator<Item = Dot<R>>>(iter: I) -> Self {
        let mut dots: Vec<_> = iter.into_iter().collect();
        dots.sort_unstable();
        dots.dedup();
        DotSet(dots)
    }
}
