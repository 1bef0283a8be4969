//! Identity tokens (docs/design.md#identity-tokens): a JWT signed with HS256 and `[Identity]
//! secret`, whose `sub` is the identity, with an `exp` (and, if it likes, an `nbf`), and an optional
//! `channels` claim limiting what the connection may subscribe, publish and command to.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longer tokens are refused before any decoding (a token is a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 5;

/// The claims this server reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
}

/// Why a token was refused; the text is what the client sees in its `connect_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("identity requires a token (auth.token)")]
    Missing,
    #[error("token must be a string")]
    NotString,
    #[error("token longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm {0:?} not allowed (HS256 only)")]
    Algorithm(String),
    #[error("token signature is not valid")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token is for another identity")]
    WrongIdentity,
    #[error("token has no {0:?} claim")]
    MissingClaim(String),
    #[error("token claim {0:?} has the wrong type")]
    BadClaim(String),
}

/// Why `realtime token` could not make a token.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("no [Identity] secret in the configuration")]
    NoSecret,
    #[error("the identity must not be empty")]
    EmptyIdentity,
    #[error("cannot sign the token: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// Channel names a connection may use: exact names and `prefix*` patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channels {
    /// `None`: every channel (no `channels` claim, or no token at all).
    rules: Option<Arc<[String]>>,
}

impl Channels {
    pub fn any() -> Channels {
        Channels { rules: None }
    }

    pub fn only(rules: Vec<String>) -> Channels {
        Channels {
            rules: Some(rules.into()),
        }
    }

    pub fn allows(&self, channel: &str) -> bool {
        let Some(rules) = &self.rules else {
            return true;
        };
        rules.iter().any(|r| match r.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => r == channel,
        })
    }
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub identity: Arc<str>,
    pub channels: Channels,
}

/// Checks (and, for `realtime token`, mints) tokens with one secret.
#[derive(Clone)]
pub struct Tokens {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(HS256)")
    }
}

impl Tokens {
    pub fn new(secret: &str) -> Tokens {
        // HS256 and nothing else: `alg: none` and the RSA/EC families are refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        // Checked when present: a token issued for later is not valid now.
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// Verifies `token` for `identity` (`None`: the token's `sub` is the identity).
    pub fn verify(&self, token: &Value, identity: Option<&str>) -> Result<Grant, TokenError> {
        let token = match token {
            Value::Null => return Err(TokenError::Missing),
            Value::String(s) if s.is_empty() => return Err(TokenError::Missing),
            Value::String(s) => s.as_str(),
            _ => return Err(TokenError::NotString),
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        // Read the algorithm first, so a token with another one gets a precise reason
        // (the library rejects an unknown name such as "none" as malformed JSON).
        let alg = header_alg(token)?;
        if alg != "HS256" {
            return Err(TokenError::Algorithm(alg));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.into_kind() {
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                    TokenError::Algorithm(alg.clone())
                }
                ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c),
                ErrorKind::InvalidClaimFormat(c) => TokenError::BadClaim(c),
                ErrorKind::Json(e) => match missing_field(&e.to_string()) {
                    Some(c) => TokenError::MissingClaim(c),
                    None => TokenError::Malformed,
                },
                _ => TokenError::Malformed,
            })?;
        let claims = data.claims;
        if identity.is_some_and(|id| id != claims.sub) {
            return Err(TokenError::WrongIdentity);
        }
        Ok(Grant {
            identity: Arc::from(claims.sub.as_str()),
            channels: match claims.channels {
                Some(list) => Channels::only(list),
                None => Channels::any(),
            },
        })
    }

    /// A token for `identity`, valid for `ttl` from now.
    pub fn mint(
        &self,
        identity: &str,
        channels: Option<Vec<String>>,
        ttl: Duration,
    ) -> Result<String, MintError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: identity.to_owned(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: Some(now),
            channels,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(MintError::Sign)
    }
}

/// The `alg` of a token's header.
fn header_alg(token: &str) -> Result<String, TokenError> {
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let raw = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| TokenError::Malformed)?;
    let header: Value = serde_json::from_slice(&raw).map_err(|_| TokenError::Malformed)?;
    match header.get("alg") {
        Some(Value::String(a)) => Ok(a.clone()),
        _ => Err(TokenError::Malformed),
    }
}

/// serde's "missing field `sub`" → `sub`.
fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sign(claims: Value, secret: &str) -> Value {
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        Value::String(t)
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn valid_tokens_grant_their_identity_and_channels() {
        let t = Tokens::new("k");
        let minted = t
            .mint(
                "alice",
                Some(vec!["chat".into(), "room-*".into()]),
                Duration::from_secs(60),
            )
            .unwrap();
        let g = t
            .verify(&Value::String(minted.clone()), Some("alice"))
            .unwrap();
        assert_eq!(&*g.identity, "alice");
        assert!(
            g.channels.allows("chat") && g.channels.allows("room-1") && g.channels.allows("room-")
        );
        assert!(!g.channels.allows("chat2") && !g.channels.allows("room"));
        let g = t.verify(&Value::String(minted), None).unwrap();
        assert_eq!(&*g.identity, "alice");
        let open = t.verify(
            &sign(json!({"sub": "bob", "exp": now() + 60}), "k"),
            Some("bob"),
        );
        assert_eq!(open.unwrap().channels, Channels::any());
    }

    #[test]
    fn refusals_say_why() {
        let t = Tokens::new("k");
        let exp = now() + 60;
        let cases = [
            (Value::Null, TokenError::Missing),
            (json!(""), TokenError::Missing),
            (json!(5), TokenError::NotString),
            (json!("x".repeat(MAX_TOKEN_LEN + 1)), TokenError::TooLong),
            (json!("abc"), TokenError::Malformed),
            (json!("a.b.c"), TokenError::Malformed),
            (json!("...."), TokenError::Malformed),
            (
                sign(json!({"sub": "alice", "exp": exp}), "other"),
                TokenError::Signature,
            ),
            (
                sign(json!({"sub": "alice", "exp": now() - 3600}), "k"),
                TokenError::Expired,
            ),
            (
                sign(json!({"sub": "mallory", "exp": exp}), "k"),
                TokenError::WrongIdentity,
            ),
            (
                sign(json!({"sub": "alice"}), "k"),
                TokenError::MissingClaim("exp".into()),
            ),
            (
                sign(json!({"exp": exp}), "k"),
                TokenError::MissingClaim("sub".into()),
            ),
            (
                sign(json!({"sub": "alice", "exp": exp, "channels": "chat"}), "k"),
                TokenError::Malformed,
            ),
        ];
        for (token, want) in cases {
            assert_eq!(t.verify(&token, Some("alice")), Err(want), "{token}");
        }
    }

    #[test]
    fn a_token_not_valid_yet_is_refused_past_the_leeway() {
        let t = Tokens::new("k");
        let exp = now() + 7200;
        let later = sign(
            json!({"sub": "alice", "exp": exp, "nbf": now() + 3600}),
            "k",
        );
        assert_eq!(
            t.verify(&later, Some("alice")),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(TokenError::NotYetValid.to_string(), "token not valid yet");
        // Within the clock skew allowed, as for `exp`.
        let skewed = sign(json!({"sub": "alice", "exp": exp, "nbf": now() + 2}), "k");
        assert!(t.verify(&skewed, Some("alice")).is_ok());
        let past = sign(json!({"sub": "alice", "exp": exp, "nbf": now() - 60}), "k");
        assert!(t.verify(&past, Some("alice")).is_ok());
        let text = sign(json!({"sub": "alice", "exp": exp, "nbf": "soon"}), "k");
        assert_eq!(
            t.verify(&text, Some("alice")),
            Err(TokenError::BadClaim("nbf".into()))
        );
    }

    /// A token signed by hand, so the header and claims keep any number form.
    fn sign_text(head: &str, claims: &str, secret: &str) -> Value {
        use hmac::{Hmac, Mac};
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(head),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signed.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Value::String(format!("{signed}.{sig}"))
    }

    /// Numbers are read with their text kept: claims and header fields of every number
    /// form beside the ones read leave a valid token valid, and a fractional `exp` is
    /// still refused.
    #[test]
    fn numbers_of_every_form_in_a_token() {
        let t = Tokens::new("k");
        let head = r#"{"alg":"HS256","typ":"JWT","x":1.5e3,"big":12345678901234567890123}"#;
        let exp = now() + 60;
        let claims = format!(
            r#"{{"sub":"alice","exp":{exp},"nbf":{},"iat":{},"n":-0,"f":0.9049426916855675,"big":100000000000000000000}}"#,
            now() - 10,
            now() - 10
        );
        let g = t.verify(&sign_text(head, &claims, "k"), Some("alice"));
        assert_eq!(g.map(|g| g.identity), Ok(Arc::from("alice")));
        let fractional = format!(r#"{{"sub":"alice","exp":{exp}.5}}"#);
        assert_eq!(
            t.verify(&sign_text(head, &fractional, "k"), Some("alice")),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let t = Tokens::new("k");
        let body = URL_SAFE_NO_PAD.encode(json!({"sub": "alice", "exp": now() + 60}).to_string());
        for alg in ["none", "HS512", "RS256"] {
            let head = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
            let token = json!(format!("{head}.{body}."));
            assert_eq!(
                t.verify(&token, Some("alice")),
                Err(TokenError::Algorithm(alg.into()))
            );
        }
    }
}
