//! Who a CONNECT (or a legacy `init`) may be: its identity, proven by a token when the
//! configuration asks for one, the channels the token allows, and the session it may
//! recover.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tracing::debug;

use super::app::HubApp;
use super::member::Claim;
use super::request::RequestError;
use super::resume::Resume;
use super::validate::Identity;
use crate::auth::Channels;
use crate::refusals::{self, Refusal};
use crate::socketio::Accept;

/// What [`HubApp::admit_connect`] decided, for the socket's state once it joined.
pub struct Admitted {
    pub(super) identity: Option<Arc<str>>,
    pub(super) channels: Channels,
    /// The detached session this connection resumes (connection state recovery).
    pub(super) claim: Option<Claim>,
    /// The session of another node this connection resumes.
    pub(super) resume: Option<Resume>,
}

impl fmt::Debug for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admitted")
            .field("identity", &self.identity)
            .field("channels", &self.channels)
            .field("recovers", &self.claim.is_some())
            .field("resumes", &self.resume.is_some())
            .finish()
    }
}

impl HubApp {
    /// Decides a CONNECT from its auth payload `{identity?, token?, pid?, offset?}`.
    pub(super) fn admit_connect(
        &self,
        auth: Option<&Value>,
        peer: Option<SocketAddr>,
    ) -> Result<Accept<Admitted>, RequestError> {
        let field = |name| auth.and_then(|a| a.get(name));
        let identity = Identity::from_json(field("identity"), self.hub.config())?;
        // Checked on every CONNECT, a recovering one too: a pid proves nothing by itself.
        let (identity, channels) = self.admit(identity, field("token"))?;
        let identity = identity.map(Identity::into_arc);
        let admitted = |claim| Admitted {
            identity: identity.clone(),
            channels: channels.clone(),
            claim,
            resume: None,
        };
        if self.hub.config().grace.is_zero() {
            // Recovery is off: no pid in the reply, so the client will not try.
            return Ok(Accept::new(admitted(None)));
        }
        // A client back from a lost connection presents its pid and the last offset it saw.
        if let Some(pid) = field("pid").and_then(Value::as_str) {
            let offset = match field("offset") {
                None | Some(Value::Null) => Some(None),
                Some(Value::String(s)) => s.parse::<u64>().ok().map(Some),
                Some(_) => None,
            };
            if let Some(offset) = offset
                && let Some(claim) = self.hub.claim(pid, offset, identity.as_deref())
            {
                return Ok(Accept {
                    sid: Some(claim.sid.clone()),
                    pid: claim.pid.clone(),
                    admitted: admitted(Some(claim)),
                });
            }
            if let Some(resume) = self.hub.resumable(pid, offset.flatten()) {
                return Ok(Accept {
                    sid: Some(resume.sid.clone()),
                    pid: Some(resume.pid.clone()),
                    admitted: Admitted {
                        resume: Some(resume),
                        ..admitted(None)
                    },
                });
            }
            debug!(%pid, "connection state not recoverable; new session");
            refusals::record(
                Refusal::RecoveryFailed,
                peer,
                &"connection state not recoverable; new session",
            );
        }
        let (sid, pid) = self.hub.new_session();
        Ok(Accept {
            sid,
            pid: Some(pid),
            admitted: admitted(None),
        })
    }

    /// The identity a connection may use with `token`, and its channels. Without
    /// `[Identity]` rules every identity is taken unproven, with every channel.
    pub(super) fn admit(
        &self,
        identity: Option<Identity>,
        token: Option<&Value>,
    ) -> Result<(Option<Identity>, Channels), RequestError> {
        let Some(security) = &self.security else {
            return Ok((identity, Channels::any()));
        };
        let (identity, channels) = security.admit(identity.map(Identity::into_arc), token)?;
        // A token's `sub` may name the identity: it must be one the hub takes.
        let identity = match identity {
            Some(id) => self.hub.validate_identity(&id)?,
            None => None,
        };
        Ok((identity, channels))
    }
}
