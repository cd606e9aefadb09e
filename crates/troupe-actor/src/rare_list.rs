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
}
