//! A map from dots to values: the store of multi-value registers.

use super::store::DotStore;
use crate::codec::{decode_dot, ReplicaTable};
use crate::context::{CausalContext, Dot};
use crate::error::CodecError;
use crate::traits::{Element, ReplicaId};
use std::collections::BTreeMap;

/// Values tagged with the dot of the write that made them. A dot names one write, so two
/// stores holding the same dot hold the same value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DotFun<R, V>(BTreeMap<Dot<R>, V>);

impl<R, V> Default for DotFun<R, V> {
    fn default() -> Self {
        DotFun(BTreeMap::new())
    }
}

impl<R: ReplicaId, V: Element> DotFun<R, V> {
    /// The store holding `value` written at `dot`.
    pub fn single(dot: Dot<R>, value: V) -> Self {
        DotFun(BTreeMap::from([(dot, value)]))
    }

    /// `(dot, value)` pairs, ascending by dot.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Dot<R>, &V)> + '_ {
        self.0.iter()
    }
}

impl<R: ReplicaId, V: Element> DotStore<R> for DotFun<R, V> {
    type Key = ();
    type Wire = Vec<(u32, u64, V)>;

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn for_each_dot(&self, f: &mut dyn FnMut(&Dot<R>)) {
        self.0.keys().for_each(f);
    }

    fn join(&mut self, ctx: &CausalContext<R>, other: &Self, other_ctx: &CausalContext<R>, _scan: bool) {
        self.0.retain(|d, _| other.0.contains_key(d) || !other_ctx.contains(d));
        for (d, v) in &other.0 {
            if !self.0.contains_key(d) && !ctx.contains(d) {
                self.0.insert(d.clone(), v.clone());
            }
        }
    }

    fn retain_dots(&mut self, keep: &mut dyn FnMut(&Dot<R>) -> bool) {
        self.0.retain(|d, _| keep(d));
    }

    fn split(&self) -> Vec<(Dot<R>, Self)> {
        self.0.iter().map(|(d, v)| (d.clone(), DotFun::single(d.clone(), v.clone()))).collect()
    }

    fn to_wire(&self, table: &ReplicaTable<'_, R>) -> Result<Self::Wire, CodecError> {
        self.0.iter().map(|(d, v)| table.encode(d).map(|(i, c)| (i, c, v.clone()))).collect()
    }

    fn from_wire(wire: Self::Wire, replicas: &[R]) -> Result<Self, CodecError> {
        let mut map = BTreeMap::new();
        for (i, c, v) in wire {
            if map.insert(decode_dot((i, c), replicas)?, v).is_some() {
                return Err(CodecError::Invalid("duplicate dot in multi-value store"));
            }
        }
        Ok(DotFun(map))
    }
}
