//! The files of `js-client/www/`: the demo page at `/` and the client bundle at `/realtime.js`.
//!
//! Both are built into the binary, so a checkout (`cargo run`) and a package serve them with
//! no file to install. When `[Server] www` names a directory, its `index.html` and
//! `realtime.js` are served instead, read on every request (edits show at once); a file
//! missing there falls back to the built-in copy.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::ErrorKind;
use std::path::PathBuf;

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use tracing::{debug, warn};

use crate::engineio::Body;

/// One file that may be served.
#[derive(Debug)]
pub struct Asset {
    /// Its name in `js-client/www/` (and in `[Server] www`).
    file: &'static str,
    content_type: &'static str,
    /// The copy built into the binary.
    embedded: &'static [u8],
}

const INDEX: Asset = Asset {
    file: "index.html",
    content_type: "text/html; charset=utf-8",
    embedded: include_bytes!("../../js-client/www/index.html"),
};

/// Built from `js-client/` with `npm run build`; a test checks it matches the sources.
const BUNDLE: Asset = Asset {
    file: "realtime.js",
    content_type: "application/javascript; charset=utf-8",
    embedded: include_bytes!("../../js-client/www/realtime.js"),
};

/// Where the files come from: the binary, or a `www` directory over it.
#[derive(Clone, Debug, Default)]
pub struct Assets {
    www: Option<PathBuf>,
}

impl Assets {
    /// Files from `www` when set (falling back to the built-in ones), else built-in only.
    pub fn new(www: Option<PathBuf>) -> Assets {
        if let Some(dir) = &www
            && !dir.is_dir()
        {
            warn!(www = %dir.display(), "[Server] www is not a directory; serving the built-in demo");
        }
        Assets { www }
    }

    /// The asset served at `path`, if any.
    pub fn lookup(path: &str) -> Option<&'static Asset> {
        match path {
            "/" | "/index.html" => Some(&INDEX),
            "/realtime.js" => Some(&BUNDLE),
            _ => None,
        }
    }

    /// Answers a GET or HEAD for `asset`: 200 with an ETag, or 304 when the client has it.
    pub async fn serve(&self, asset: &Asset, request: &HeaderMap) -> Response<Body> {
        let body = self.read(asset).await;
        let etag = etag(&body);
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let mut res = if fresh {
            let mut res = Response::new(Body::default());
            *res.status_mut() = StatusCode::NOT_MODIFIED;
            res
        } else {
            let mut res = Response::new(Body::from(body));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            );
            res
        };
        let headers = res.headers_mut();
        // Revalidate every time: the page and the bundle must match the running server.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Ok(v) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, v);
        }
        res
    }

    async fn read(&self, asset: &Asset) -> Bytes {
        let Some(dir) = &self.www else {
            return Bytes::from_static(asset.embedded);
        };
        let path = dir.join(asset.file);
        match tokio::fs::read(&path).await {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                if e.kind() == ErrorKind::NotFound {
                    debug!(path = %path.display(), "not in [Server] www; serving the built-in copy");
                } else {
                    warn!(path = %path.display(), error = %e, "cannot read; serving the built-in copy");
                }
                Bytes::from_static(asset.embedded)
            }
        }
    }
}

/// A strong validator for `body`: stable for the same bytes within one binary.
fn etag(body: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{:016x}-{:x}\"", h.finish(), body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_two_files() {
        assert_eq!(Assets::lookup("/").map(|a| a.file), Some("index.html"));
        assert_eq!(
            Assets::lookup("/realtime.js").map(|a| a.file),
            Some("realtime.js")
        );
        assert!(Assets::lookup("/../Cargo.toml").is_none());
        assert!(Assets::lookup("/www/realtime.js").is_none());
    }

    #[test]
    fn embedded_files_are_what_they_claim() {
        assert!(INDEX.embedded.starts_with(b"<!doctype html>"));
        assert!(std::str::from_utf8(BUNDLE.embedded).is_ok());
        assert_ne!(etag(INDEX.embedded), etag(BUNDLE.embedded));
    }

    #[tokio::test]
    async fn www_overrides_and_falls_back() {
        let dir = std::env::temp_dir().join(format!("realtime-www-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "<p>mine</p>").unwrap();
        let assets = Assets::new(Some(dir.clone()));
        assert_eq!(&assets.read(&INDEX).await[..], b"<p>mine</p>");
        assert_eq!(&assets.read(&BUNDLE).await[..], BUNDLE.embedded);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn if_none_match_gets_304() {
        let assets = Assets::default();
        let first = assets.serve(&BUNDLE, &HeaderMap::new()).await;
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers()[header::ETAG].clone();
        let mut req = HeaderMap::new();
        req.insert(header::IF_NONE_MATCH, tag);
        let again = assets.serve(&BUNDLE, &req).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }
}
