//! Dropping root (docs/design.md#daemon): started as root (supervisord, `sudo realtime`), the
//! daemon binds every port first, then becomes `[Server] user` before it serves anything.
//!
//! The user is looked up at start, before any port is bound, so a name that does not exist
//! is a configuration error like any other. Under systemd the unit's `User=` already did
//! the switch: the daemon then runs as that user and there is nothing to do.

use nix::unistd::{Gid, Uid, User, getegid, geteuid, setgid, setgroups, setuid};
use tracing::{info, warn};

/// Why the daemon cannot become `[Server] user`.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// The name is not an account of this machine: a configuration error.
    #[error("[Server] user: no such user {0:?}")]
    NoSuchUser(String),
    /// The account database could not be read.
    #[error("[Server] user: cannot look up {name:?}: {source}")]
    Lookup { name: String, source: nix::Error },
    /// A system call of the switch failed.
    #[error("cannot switch to user {name}: {call}: {source}")]
    Switch {
        name: String,
        call: &'static str,
        source: nix::Error,
    },
    /// The calls succeeded, yet the ids are not the account's.
    #[error("cannot switch to user {name}: still uid {uid} gid {gid}")]
    Unchanged { name: String, uid: Uid, gid: Gid },
}

impl PrivilegeError {
    /// Whether the configuration, not the machine's state, is at fault.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            PrivilegeError::NoSuchUser(_) | PrivilegeError::Lookup { .. }
        )
    }
}

/// The account to switch to.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// Looks up `[Server] user`; `Ok(None)` when it is unset.
pub fn resolve(user: Option<&str>) -> Result<Option<Account>, PrivilegeError> {
    let Some(name) = user else {
        return Ok(None);
    };
    match User::from_name(name) {
        Ok(Some(u)) => Ok(Some(Account {
            name: u.name,
            uid: u.uid,
            gid: u.gid,
        })),
        Ok(None) => Err(PrivilegeError::NoSuchUser(name.to_owned())),
        Err(source) => Err(PrivilegeError::Lookup {
            name: name.to_owned(),
            source,
        }),
    }
}

/// Becomes `account`: no supplementary groups, then its group, then its user, in that
/// order (after `setuid` the process could no longer change its groups). Call after every
/// listener is bound and before serving.
pub fn drop_to(account: Option<&Account>) -> Result<(), PrivilegeError> {
    let euid = geteuid();
    let Some(account) = account else {
        if euid.is_root() {
            warn!("running as root; set [Server] user to drop privileges once the ports are bound");
        }
        return Ok(());
    };
    if euid == account.uid {
        // Already that user: a systemd User=, or a checkout run by that user.
        return Ok(());
    }
    if !euid.is_root() {
        warn!(
            user = %account.name,
            uid = euid.as_raw(),
            "[Server] user is set but the daemon was not started as root; staying as uid {euid}"
        );
        return Ok(());
    }
    let fail = |call: &'static str| {
        move |source| PrivilegeError::Switch {
            name: account.name.clone(),
            call,
            source,
        }
    };
    setgroups(&[]).map_err(fail("setgroups"))?;
    setgid(account.gid).map_err(fail("setgid"))?;
    setuid(account.uid).map_err(fail("setuid"))?;
    // setuid as root sets the real, effective and saved ids: there is no way back.
    if geteuid() != account.uid || getegid() != account.gid {
        return Err(PrivilegeError::Unchanged {
            name: account.name.clone(),
            uid: geteuid(),
            gid: getegid(),
        });
    }
    info!(
        user = %account.name,
        uid = account.uid.as_raw(),
        gid = account.gid.as_raw(),
        "dropped root privileges"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_user_means_no_change() {
        assert!(resolve(None).unwrap().is_none());
    }

    #[test]
    fn unknown_user_is_an_error_naming_it() {
        let e = resolve(Some("no-such-user-realtime-test"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no-such-user-realtime-test") && e.contains("[Server] user"),
            "{e}"
        );
    }

    #[test]
    fn root_exists() {
        let root = resolve(Some("root")).unwrap().unwrap();
        assert!(root.uid.is_root());
    }
}
