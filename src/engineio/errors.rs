//! The errors an Engine.IO request can end in, each mapped in one place to the reference
//! server's status and `{"code":N,"message":...}` body.

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::Body;

/// The reference server's errors, each with its `{"code":N,"message":...}` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("Transport unknown")]
    UnknownTransport,
    #[error("Session ID unknown")]
    UnknownSid,
    #[error("Bad handshake method")]
    BadHandshakeMethod,
    #[error("Bad request")]
    BadRequest,
    #[error("Forbidden")]
    Forbidden,
    #[error("Unsupported protocol version")]
    UnsupportedProtocolVersion,
    #[error("Payload too large")]
    PayloadTooLarge,
    #[error("Server full")]
    TooManySessions,
    #[error("Internal error")]
    Internal,
}

impl EngineError {
    fn code(self) -> u8 {
        match self {
            EngineError::UnknownTransport => 0,
            EngineError::UnknownSid => 1,
            EngineError::BadHandshakeMethod => 2,
            EngineError::BadRequest | EngineError::PayloadTooLarge => 3,
            EngineError::Forbidden => 4,
            EngineError::UnsupportedProtocolVersion => 5,
            EngineError::TooManySessions | EngineError::Internal => 6,
        }
    }

    fn status(self) -> StatusCode {
        match self {
            EngineError::Forbidden => StatusCode::FORBIDDEN,
            EngineError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            EngineError::TooManySessions => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Whether the server, not the client, failed to take the request (logged at warn).
    pub(crate) fn is_server_side(self) -> bool {
        matches!(self, EngineError::TooManySessions | EngineError::Internal)
    }

    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({"code": self.code(), "message": self.to_string()});
        let mut res = Response::new(Body::from(body.to_string()));
        *res.status_mut() = self.status();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_match_the_reference_server() {
        let res = EngineError::UnknownSid.into_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(EngineError::UnknownSid.code(), 1);
        assert_eq!(
            EngineError::TooManySessions.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert!(EngineError::TooManySessions.is_server_side());
        assert!(!EngineError::BadRequest.is_server_side());
    }
}
