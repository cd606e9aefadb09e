//! Where pictures come from.

use std::future::Future;
use std::pin::Pin;

use super::model::ClusterPicture;

/// The future a [`PictureSource`] answers with.
pub type PictureFuture<'a> = Pin<Box<dyn Future<Output = ClusterPicture> + Send + 'a>>;

/// Something that can take a picture of the cluster.
///
/// Asynchronous because a real node asks other nodes for their views over the network. The
/// dashboard calls it at most once at a time and caches the answer briefly, however many pages
/// are open, and gives up on a call that takes longer than its configured timeout.
pub trait PictureSource: Send + Sync + 'static {
    /// Takes a picture now.
    fn picture(&self) -> PictureFuture<'_>;
}

/// A [`PictureSource`] from a synchronous function (a node that knows everything locally, tests).
pub struct FnSource<F>(pub F);

impl<F> PictureSource for FnSource<F>
where
    F: Fn() -> ClusterPicture + Send + Sync + 'static,
{
    fn picture(&self) -> PictureFuture<'_> {
        let picture = (self.0)();
        Box::pin(std::future::ready(picture))
    }
}
