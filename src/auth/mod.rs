//! Who may connect and publish: the origin check and license keys (docs/design.md#origin-check),
//! API keys (docs/design.md#api-keys) and identity tokens (docs/design.md#identity-tokens), read
//! from the config into [`Rules`] that a reload can swap while the server runs.
//!
//! `origin` and `license` hold the origin policy, `local` what makes a request local,
//! `api_key` the bearer keys of `/api/*`, `token` the JWTs; this file puts them together
//! behind [`Security`], which the Engine.IO handshake (as its [`Gate`]), the HTTP API and
//! the Socket.IO application ask.

pub mod api_key;
pub mod license;
pub mod local;
pub mod origin;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hyper::StatusCode;
use hyper::header::{self, HeaderMap};
use serde_json::Value;
use tracing::{info, warn};

use crate::config::Config;
use crate::engineio::Gate;
use crate::ratelimit::LogLimit;

pub use api_key::{ApiKeys, KeyRefusal};
pub use origin::{OriginPolicy, Pattern, Verdict};
pub use token::{Channels, Grant, MintError, TokenError, Tokens};

/// What stops the server from starting (or a reload from taking effect).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read license file {}: {source}", path.display())]
    LicenseFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a connection may not have the identity it asked for; the text is what the client
/// sees (a CONNECT_ERROR, or the answer to a legacy `init`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("identity required")]
    IdentityRequired,
}

/// Every rule, as read from one version of the config.
#[derive(Debug, Clone)]
pub struct Rules {
    pub origins: OriginPolicy,
    pub api_keys: ApiKeys,
    /// `[Identity] secret` set: identities need a token.
    pub tokens: Option<Tokens>,
    pub require_identity: bool,
    /// The license file read, if any (for the log).
    pub license_file: Option<PathBuf>,
}

impl Rules {
    /// Builds the rules, reading the license file. Returns what deserves a warning
    /// (junk license lines, allowlist entries that can never match) beside them.
    pub fn from_config(c: &Config) -> Result<(Rules, Vec<String>), AuthError> {
        let mut warnings = Vec::new();
        let license_file = license::locate(c.license.file.as_deref())?;
        let keys = match &license_file {
            Some(path) => {
                let k = license::load(path)?;
                warnings.extend(k.warnings);
                k.keys
            }
            None => Default::default(),
        };
        let mut patterns = Vec::new();
        for raw in &c.license.allowed_origins {
            match Pattern::parse(raw) {
                Some(p) => patterns.push(p),
                None => warnings.push(format!(
                    "[License] allowed-origins: {raw:?} is not an origin (https://host[:port]), \
                     a host, *.domain or *; ignored"
                )),
            }
        }
        let secret = c
            .license
            .secret
            .clone()
            .unwrap_or_else(|| license::ORIGINAL_SECRET.to_owned());
        Ok((
            Rules {
                origins: OriginPolicy::new(patterns, keys, secret),
                api_keys: ApiKeys::new(&c.api.keys),
                tokens: c.identity.secret.as_deref().map(Tokens::new),
                require_identity: c.identity.require,
                license_file,
            },
            warnings,
        ))
    }
}

/// A refused API request: its status and the error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRefusal {
    pub status: StatusCode,
    pub message: &'static str,
}

/// What an `/api/*` request let in by [`Security::check_api`] may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiGrant {
    /// Whether it may publish under an identity: where tokens protect identities, only a
    /// request with an API key may (a local one proves no identity).
    pub identities: bool,
}

/// The rules in force, shared by every request and connection.
pub struct Security {
    /// Swapped whole by [`Security::reload`]; readers clone the `Arc` and let go at once.
    /// A poisoned lock still holds a whole `Arc` (a swap cannot be half done), so it is
    /// used as it is.
    rules: RwLock<Arc<Rules>>,
    /// Refused handshakes can come at any rate: one warning per period.
    refusal_log: LogLimit,
    /// Handshakes refused by the origin check (for metrics); refused API requests are
    /// counted with the other refusals (`crate::refusals`).
    pub refused: AtomicU64,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security").finish_non_exhaustive()
    }
}

impl Security {
    /// The rules of `c`, with their warnings logged.
    pub fn from_config(c: &Config) -> Result<Security, AuthError> {
        let rules = Self::load(c)?;
        Ok(Security {
            rules: RwLock::new(Arc::new(rules)),
            refusal_log: LogLimit::new(Duration::from_secs(10)),
            refused: AtomicU64::new(0),
        })
    }

    /// Replaces the rules with those of `c` (license keys, origins, API keys, identity);
    /// on error the old rules stay.
    pub fn reload(&self, c: &Config) -> Result<(), AuthError> {
        let rules = Self::load(c)?;
        *self.rules.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(rules);
        Ok(())
    }

    fn load(c: &Config) -> Result<Rules, AuthError> {
        let (rules, warnings) = Rules::from_config(c)?;
        for w in warnings {
            warn!("{w}");
        }
        match &rules.license_file {
            Some(p) => info!("license keys from {}", p.display()),
            None => info!("no license file"),
        }
        if rules.origins.is_open_only_to_loopback() {
            info!(
                "no license keys or allowed-origins: only clients of a server reached as \
                 localhost may connect"
            );
        }
        if rules.api_keys.is_empty() {
            info!(
                "no [Api] keys: /api answers only requests from this machine to localhost{}",
                if rules.tokens.is_some() {
                    ", and none may publish under an identity"
                } else {
                    ""
                }
            );
        }
        Ok(rules)
    }

    pub fn rules(&self) -> Arc<Rules> {
        self.rules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `/api/*`: a bearer key when keys are configured, else a local request
    /// ([`local::reached_locally`]). Headers such as `Origin` prove nothing here: a backend
    /// writes whatever it likes.
    pub fn check_api(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<ApiGrant, ApiRefusal> {
        let rules = self.rules();
        if !rules.api_keys.is_empty() {
            rules.api_keys.check(headers).map_err(|r| match r {
                KeyRefusal::Missing => ApiRefusal {
                    status: StatusCode::UNAUTHORIZED,
                    message: "missing API key (Authorization: Bearer KEY)",
                },
                KeyRefusal::Wrong => ApiRefusal {
                    status: StatusCode::FORBIDDEN,
                    message: "wrong API key",
                },
            })?;
            return Ok(ApiGrant { identities: true });
        }
        if !local::reached_locally(headers, peer) {
            return Err(ApiRefusal {
                status: StatusCode::FORBIDDEN,
                message: "not a local request: without [Api] keys, /api answers only \
                          requests from this machine to localhost",
            });
        }
        Ok(ApiGrant {
            identities: rules.tokens.is_none(),
        })
    }

    /// Decides the identity of a Socket.IO CONNECT from its auth payload's identity (as
    /// validated) and token. Returns the identity (a token alone names its `sub`) and the
    /// channels it may use.
    pub fn admit(
        &self,
        identity: Option<Arc<str>>,
        token: Option<&Value>,
    ) -> Result<(Option<Arc<str>>, Channels), AdmitError> {
        let rules = self.rules();
        let token = token.filter(|t| !matches!(t, Value::Null) && t.as_str() != Some(""));
        let (identity, channels) = match (&rules.tokens, identity, token) {
            (Some(tokens), Some(id), t) => {
                let g = tokens.verify(t.unwrap_or(&Value::Null), Some(&id))?;
                (Some(id), g.channels)
            }
            (Some(tokens), None, Some(t)) => {
                let g = tokens.verify(t, None)?;
                (Some(g.identity), g.channels)
            }
            (_, identity, _) => (identity, Channels::any()),
        };
        if identity.is_none() && rules.require_identity {
            return Err(AdmitError::IdentityRequired);
        }
        Ok((identity, channels))
    }

    /// Whether an identity must come with a token (legacy `init` asks this).
    pub fn tokens_required(&self) -> bool {
        self.rules().tokens.is_some()
    }

    fn log_refusal(&self, who: &str, why: &str, peer: Option<SocketAddr>) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        if let Some(held) = self.refusal_log.allow() {
            let who = if who.is_empty() { "(none)" } else { who };
            warn!(
                origin = %who,
                ?peer,
                suppressed = held,
                "handshake refused: {why}"
            );
        }
    }
}

impl Gate for Security {
    fn allows(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> bool {
        self.rules().origins.check(headers, peer) == Verdict::Allowed
    }

    fn refused(&self, headers: &HeaderMap, peer: Option<SocketAddr>) {
        let shown = |name| {
            headers.get(name).map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(200)
                    .collect()
            })
        };
        let who: String = shown(header::ORIGIN)
            .or_else(|| shown(header::HOST).map(|h| format!("host {h}")))
            .unwrap_or_default();
        // Loopback names from elsewhere are refused for where they came from, not for
        // what they name: say so, or the line would read as a refused localhost.
        let why = if origin::names_loopback(headers) {
            "loopback Host/Origin from another machine or through a proxy (only a client on \
             this machine reaching it as localhost is local)"
        } else {
            "origin not allowed (add a license key or [License] allowed-origins)"
        };
        self.log_refusal(&who, why, peer);
    }
}

/// `realtime license DOMAIN`: the key for a domain (or URL), and the domain it is for.
pub fn license_key(domain: &str, c: &Config) -> (String, String) {
    let host = match origin::Origin::parse(&domain.to_ascii_lowercase()) {
        Some(o) => o.host,
        None => domain
            .rsplit_once(':')
            .filter(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
            .map_or(domain, |(h, _)| h)
            .to_owned(),
    };
    let reduced = license::licensed_domain(&host);
    let secret = c
        .license
        .secret
        .as_deref()
        .unwrap_or(license::ORIGINAL_SECRET);
    (license::key(&reduced, secret), reduced)
}

/// `realtime token IDENTITY`: a token signed with `[Identity] secret`.
pub fn mint_token(
    c: &Config,
    identity: &str,
    channels: Option<Vec<String>>,
    ttl: Duration,
) -> Result<String, MintError> {
    let secret = c.identity.secret.as_deref().ok_or(MintError::NoSecret)?;
    if identity.is_empty() {
        return Err(MintError::EmptyIdentity);
    }
    Tokens::new(secret).mint(identity, channels, ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "test.conf").unwrap()
    }

    #[test]
    fn license_command_matches_the_original() {
        let c = Config::default();
        for d in [
            "mydomain.com",
            "www.mydomain.com",
            "https://www.mydomain.com:8443",
            "MyDomain.com:80",
        ] {
            assert_eq!(
                license_key(d, &c),
                (
                    "571ab3357c3e56e20b764f25e62149229f5d4b08".to_owned(),
                    "mydomain.com".to_owned()
                ),
                "{d}"
            );
        }
        let other = config("[License]\nsecret = x\n");
        assert_ne!(
            license_key("mydomain.com", &other).0,
            license_key("mydomain.com", &c).0
        );
    }

    #[test]
    fn admission_by_identity_and_token() {
        let s = Security::from_config(&config(
            "[License]\nfile = /dev/null\n[Identity]\nsecret = k\n",
        ))
        .unwrap();
        let t = mint_token(
            &config("[Identity]\nsecret = k\n"),
            "alice",
            Some(vec!["a*".into()]),
            Duration::from_secs(60),
        )
        .unwrap();
        let token = Value::String(t);
        let (id, ch) = s.admit(Some("alice".into()), Some(&token)).unwrap();
        assert_eq!(id.as_deref(), Some("alice"));
        assert!(ch.allows("ab") && !ch.allows("b"));
        assert_eq!(
            s.admit(None, Some(&token)).unwrap().0.as_deref(),
            Some("alice")
        );
        let refusal = s.admit(Some("alice".into()), None).unwrap_err();
        assert_eq!(refusal, AdmitError::Token(TokenError::Missing));
        assert_eq!(
            refusal.to_string(),
            "identity requires a token (auth.token)"
        );
        assert_eq!(
            s.admit(Some("bob".into()), Some(&token))
                .unwrap_err()
                .to_string(),
            "token is for another identity"
        );
        assert!(s.admit(None, None).is_ok());

        let req = Security::from_config(&config(
            "[License]\nfile = /dev/null\n[Identity]\nrequire = true\n",
        ))
        .unwrap();
        assert_eq!(
            req.admit(None, None).unwrap_err(),
            AdmitError::IdentityRequired
        );
        assert_eq!(
            AdmitError::IdentityRequired.to_string(),
            "identity required"
        );
        assert!(req.admit(Some("carol".into()), None).is_ok());
    }

    #[test]
    fn a_configured_license_file_must_exist() {
        let e =
            Rules::from_config(&config("[License]\nfile = /nonexistent/lic.txt\n")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/lic.txt"), "{e}");
    }

    #[test]
    fn tokens_need_a_secret() {
        let e = mint_token(&Config::default(), "a", None, Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.to_string(), "no [Identity] secret in the configuration");
        let e = mint_token(
            &config("[Identity]\nsecret = k\n"),
            "",
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(e, MintError::EmptyIdentity), "{e}");
    }
}
