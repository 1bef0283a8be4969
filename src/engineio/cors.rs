//! CORS for browsers on other origins: the headers of every answer, and the preflight.

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::Body;

/// CORS for browsers on other origins, with credentials (cookies for sticky sessions):
/// an `Origin` the gate refused gets no CORS headers, so its page cannot read the answer.
pub(super) fn cors(res: &mut Response<Body>, origin: Option<HeaderValue>, allowed: bool) {
    let h = res.headers_mut();
    match origin {
        Some(_) if !allowed => {
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        Some(o) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        None => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
}

pub(super) fn preflight(req: &Request<Incoming>) -> Response<Body> {
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    res
}
