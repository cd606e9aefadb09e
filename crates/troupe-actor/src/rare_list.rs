//! [`RareList`]: a list that costs one word while empty, for per-actor lists most actors never
//! fill (watchers, registered names, senders blocked on a full mailbox). With a million idle
//! actors, each two words saved is 16 MB.

/// A list most actors leave empty: one word (a `Vec` is three), allocated on the first push.
// The box is the point: one word while empty, where a `Vec` is three.
#[allow(clippy::box_collection)]
pub(crate) struct RareList<T>(Option<Box<Vec<T>>>);

impl<T> Default for RareList<T> {
    fn default() -> Self {
        RareList(None)
    }
}

impl<T> RareList<T> {
    pub(crate) fn push(&mut self, item: T) {
        self.0.get_or_insert_with(Default::default).push(item);
    }

    /// Pushes `item`, first dropping the items `keep` rejects if the list is full (the push would
    /// reallocate). Amortised O(1) per push: a pruning that frees less than half of the room
    /// doubles it, so the next one is at least as many pushes away as this one cost.
    pub(crate) fn push_pruning(&mut self, item: T, keep: impl FnMut(&T) -> bool) {
        if let Some(items) = &mut self.0 {
            let room = items.capacity();
            if items.len() == room && room >= 4 {
                items.retain(keep);
                if items.len() > room / 2 {
                    items.reserve_exact(2 * room - items.len());
                }
            }
        }
        self.push(item);
    }

    pub(crate) fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        if let Some(items) = &mut self.0 {
            items.retain(keep);
            if items.is_empty() {
                self.0 = None;
            }
        }
    }

    pub(crate) fn contains(&self, item: &T) -> bool
    where
        T: PartialEq,
    {
        self.0.as_ref().is_some_and(|items| items.contains(item))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |items| items.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|items| items.iter())
    }

    /// Takes every item, leaving the list empty.
    pub(crate) fn take(&mut self) -> Vec<T> {
        self.0.take().map(|items| *items).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::RareList;

    #[test]
    fn behaves_like_a_vec_and_frees_when_emptied() {
        let mut list = RareList::default();
        assert!(list.is_empty());
        list.push(1);
        list.push(2);
        list.push(3);
        assert!(list.contains(&2));
        assert_eq!(list.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
        list.retain(|&x| x != 2);
        assert_eq!(list.iter().copied().collect::<Vec<_>>(), [1, 3]);
        list.retain(|_| false);
        assert!(list.is_empty(), "an emptied list gives its allocation back");
        list.push(4);
        assert_eq!(list.take(), [4]);
        assert!(list.is_empty());
        assert_eq!(std::mem::size_of::<RareList<String>>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn pruning_pushes_drop_rejected_items_and_stay_amortised() {
        let mut list = RareList::default();
        // Every item but the newest is stale: the list never holds more than one fill's worth.
        let mut checks = 0usize;
        for i in 0..10_000u32 {
            list.push_pruning(i, |&x| {
                checks += 1;
                x + 1 == i
            });
            assert!(list.len() <= 8, "stale items piled up: {}", list.len());
        }
        assert!(checks < 2 * 10_000, "pruning was not amortised: {checks} checks");
        // Nothing stale: the room doubles instead of pruning on every push.
        let mut list = RareList::default();
        let mut checks = 0usize;
        for i in 0..10_000u32 {
            list.push_pruning(i, |_| {
                checks += 1;
                true
            });
        }
        assert_eq!(list.len(), 10_000);
        assert!(checks < 2 * 10_000, "pruning was not amortised: {checks} checks");
    }
}
