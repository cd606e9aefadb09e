//! A bounded list of members with random picks (the active and the passive view).

use rand::rngs::StdRng;
use rand::Rng;

use crate::member::{Member, PeerId};

/// A small bounded set of members kept in a `Vec` (views hold tens of entries).
#[derive(Clone, Debug)]
pub(crate) struct View {
    members: Vec<Member>,
    cap: usize,
}

impl View {
    pub(crate) fn new(cap: usize) -> Self {
        View { members: Vec::with_capacity(cap), cap }
    }

    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.members.len() >= self.cap
    }

    pub(crate) fn contains(&self, id: PeerId) -> bool {
        self.members.iter().any(|m| m.id == id)
    }

    pub(crate) fn iter_any(&self, f: impl Fn(&Member) -> bool) -> bool {
        self.members.iter().any(f)
    }

    pub(crate) fn ids(&self) -> Vec<PeerId> {
        self.members.iter().map(|m| m.id).collect()
    }

    pub(crate) fn to_vec(&self) -> Vec<Member> {
        self.members.clone()
    }

    /// Adds `member` if absent and there is room; says whether it was added.
    pub(crate) fn push(&mut self, member: Member) -> bool {
        if self.is_full() || self.contains(member.id) {
            return false;
        }
        self.members.push(member);
        true
    }

    pub(crate) fn remove(&mut self, id: PeerId) -> Option<Member> {
        let i = self.members.iter().position(|m| m.id == id)?;
        Some(self.members.swap_remove(i))
    }

    /// A random member for which `ok` holds.
    pub(crate) fn random(&self, rng: &mut StdRng, ok: impl Fn(&Member) -> bool) -> Option<&Member> {
        let n = self.members.iter().filter(|m| ok(m)).count();
        if n == 0 {
            return None;
        }
        let k = rng.random_range(0..n);
        self.members.iter().filter(|m| ok(m)).nth(k)
    }

    /// Up to `k` distinct random members for which `ok` holds.
    pub(crate) fn sample(&self, rng: &mut StdRng, k: usize, ok: impl Fn(&Member) -> bool) -> Vec<Member> {
        let mut pool: Vec<&Member> = self.members.iter().filter(|m| ok(m)).collect();
        let mut out = Vec::with_capacity(k.min(pool.len()));
        while out.len() < k && !pool.is_empty() {
            let i = rng.random_range(0..pool.len());
            out.push(pool.swap_remove(i).clone());
        }
        out
    }
}
