//! The cluster picture: what the dashboard shows, as JSON (the contract between a node and the
//! page).
//!
//! Counters are cumulative since the node (or the link) started; the page computes rates from
//! two successive pictures using [`ClusterPicture::taken_at_ms`].

use serde::{Deserialize, Serialize};

/// One picture of the cluster as one node (the observer) sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPicture {
    /// Name of the node serving the dashboard.
    pub observer: String,
    /// Which overlay the cluster runs (`hyparview`, `fullmesh`, ...).
    pub overlay: String,
    /// When the picture was taken, in milliseconds since the Unix epoch (the page divides
    /// counter differences by differences of this).
    pub taken_at_ms: u64,
    /// The nodes the observer knows of.
    pub nodes: Vec<NodeView>,
    /// The links between them, one entry per direction and kind.
    pub edges: Vec<EdgeView>,
}

/// One node in the picture.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Its incarnation, in hex (what [`EdgeView::from`] and [`EdgeView::to`] refer to).
    pub id: String,
    /// Its human-readable name.
    pub name: String,
    /// The address it listens on for other nodes.
    pub addr: String,
    /// Its role, if the overlay has roles (`client`, `server`, ...).
    pub role: Option<String>,
    /// Whether the observer considers it up.
    pub up: bool,
    /// Messages it received, cumulative.
    pub msgs_in: u64,
    /// Messages it sent, cumulative.
    pub msgs_out: u64,
    /// Bytes it received, cumulative.
    pub bytes_in: u64,
    /// Bytes it sent, cumulative.
    pub bytes_out: u64,
}

/// What kind of link an edge is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    /// An open connection the overlay uses (HyParView's active view, full-mesh links).
    Active,
    /// A peer known but not connected (HyParView's passive view).
    Passive,
    /// A broadcast-tree link (Plumtree's eager-push peers).
    Tree,
}

/// A directed link from one node to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeView {
    /// The node whose view holds the link ([`NodeView::id`]).
    pub from: String,
    /// The node it points to ([`NodeView::id`]).
    pub to: String,
    /// Which kind of link.
    pub kind: EdgeKind,
    /// Messages sent on the link from `from` to `to`, cumulative.
    pub msgs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page reads these exact field names and kind strings: a rename here breaks it.
    #[test]
    fn json_shape_is_the_one_the_page_reads() {
        let picture = ClusterPicture {
            observer: "a".into(),
            overlay: "hyparview".into(),
            taken_at_ms: 7,
            nodes: vec![NodeView {
                id: "00000000000000ff".into(),
                name: "a".into(),
                addr: "127.0.0.1:1".into(),
                role: None,
                up: true,
                msgs_in: 1,
                msgs_out: 2,
                bytes_in: 3,
                bytes_out: 4,
            }],
            edges: vec![EdgeView { from: "x".into(), to: "y".into(), kind: EdgeKind::Passive, msgs: 5 }],
        };
        let value = serde_json::to_value(&picture).expect("serializes");
        let expected = serde_json::json!({
            "observer": "a", "overlay": "hyparview", "taken_at_ms": 7,
            "nodes": [{"id": "00000000000000ff", "name": "a", "addr": "127.0.0.1:1", "role": null,
                       "up": true, "msgs_in": 1, "msgs_out": 2, "bytes_in": 3, "bytes_out": 4}],
            "edges": [{"from": "x", "to": "y", "kind": "passive", "msgs": 5}],
        });
        assert_eq!(value, expected);
        let back: ClusterPicture = serde_json::from_value(value).expect("deserializes");
        assert_eq!(back, picture);
        for (kind, text) in [(EdgeKind::Active, "\"active\""), (EdgeKind::Tree, "\"tree\"")] {
            assert_eq!(serde_json::to_string(&kind).expect("serializes"), text);
        }
    }
}
