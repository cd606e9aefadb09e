//! The page: one HTML document with its style and script inline, assembled at compile time.

use std::time::Duration;

const HTML: &str = include_str!("page.html");
const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// The page, with its poll interval filled in.
pub(crate) fn render(poll_interval: Duration) -> String {
    let millis = poll_interval.as_millis().clamp(100, 60_000);
    HTML.replace("/*STYLE*/", CSS).replace("/*SCRIPT*/", &JS.replace("__POLL_MS__", &millis.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        let page = render(Duration::from_millis(750));
        assert!(page.contains("const POLL_MS = 750;"), "poll interval filled in");
        assert!(!page.contains("/*STYLE*/") && !page.contains("/*SCRIPT*/") && !page.contains("__POLL_MS__"));
        // Nothing is loaded from elsewhere: no external scripts, styles, fonts or images.
        for needle in ["src=\"http", "href=\"http", "url(http", "@import", "<script src"] {
            assert!(!page.contains(needle), "page references an external resource: {needle}");
        }
    }
}
