//! `GET /api/openapi.json`: the HTTP API's OpenAPI 3 description, docs/openapi.json, built
//! into the binary.
//!
//! It is served without the API's key or origin check: it describes the routes, not any
//! data, and clients and tools fetch it before they have a key.

use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::json_response;
use crate::engineio::Body;

/// Where the document is served.
pub(super) const PATH: &str = "/api/openapi.json";

/// The document, as committed.
pub(super) const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// The answer to a request for [`PATH`].
pub(super) fn serve(method: &Method) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut res = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"ok": false, "error": "method not allowed"}),
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    let mut res = Response::new(Body::from(DOCUMENT));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The router's paths (src/http/mod.rs and api.rs match arms) that the document must
    /// describe; tests/python/test_openapi.py checks the server answers each as described.
    const ROUTES: [(&str, &str); 8] = [
        ("/api/publish", "post"),
        ("/api/channels", "get"),
        ("/api/channels/{name}", "get"),
        ("/api/channels/{name}/history", "get"),
        (PATH, "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ];

    #[test]
    fn the_document_is_openapi_3_and_describes_every_route() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in ROUTES {
            assert!(paths[path][method].is_object(), "{method} {path}");
        }
        assert_eq!(
            paths.len(),
            ROUTES.len(),
            "a documented path the router lacks"
        );
    }

    #[test]
    fn other_methods_are_refused_with_allow() {
        let res = serve(&Method::DELETE);
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(serve(&Method::HEAD).status(), StatusCode::OK);
    }
}
