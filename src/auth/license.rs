//! License keys, compatible with the 2012 server: a key is the hex SHA-1 of a domain
//! followed by a secret, and a license file lists keys one a line.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::AuthError;

/// The secret the 2012 server had built in; the default of `[License] secret`, so keys
/// issued for it keep working (`mydomain.com` → `571ab335…`).
pub const ORIGINAL_SECRET: &str = "Rk8ohYJQBXopu82XmVTFsAgG3r4f";

/// Where the license file is looked for when `[License] file` is not set, in order.
pub const DEFAULT_FILES: [&str; 2] = ["/etc/realtime/license.txt", "./etc/license.txt"];

/// The key of `domain` (already reduced, see [`licensed_domain`]).
pub fn key(domain: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(domain.as_bytes());
    h.update(secret.as_bytes());
    let mut out = String::with_capacity(40);
    for b in h.finalize() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The domain a key is issued for: a host name reduced to its last two labels
/// (`www.mydomain.com` → `mydomain.com`), an IP address whole. Lower-case, without a
/// trailing dot or brackets.
pub fn licensed_domain(host: &str) -> String {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host.parse::<IpAddr>().is_ok() {
        return host;
    }
    let labels: Vec<&str> = host.split('.').collect();
    match labels.len() {
        0..=2 => host,
        n => labels[n - 2..].join("."),
    }
}

/// The keys of a license file, and what was wrong with lines that are not keys.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Keys {
    /// Lower-case hex.
    pub keys: HashSet<String>,
    /// `file:line: why`, one per skipped line (for the log).
    pub warnings: Vec<String>,
}

/// Reads license file text: one key a line; blank lines and lines starting with `#`,
/// `;` or `//` are comments; anything else that is not 40 hex digits is skipped with a
/// warning (a typo must not stop the server, but must be visible).
pub fn parse(text: &str, origin: &str) -> Keys {
    let mut out = Keys::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) || line.starts_with("//") {
            continue;
        }
        if line.len() == 40 && line.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.keys.insert(line.to_ascii_lowercase());
        } else {
            let shown: String = line.chars().take(60).collect();
            out.warnings.push(format!(
                "{origin}:{}: not a license key (40 hex digits), skipped: {shown:?}",
                i + 1
            ));
        }
    }
    out
}

/// The license file in use: `configured` when set (it must exist), else the first of
/// [`DEFAULT_FILES`] that exists, else none.
pub fn locate(configured: Option<&Path>) -> Result<Option<PathBuf>, AuthError> {
    if let Some(path) = configured {
        return Ok(Some(path.to_owned()));
    }
    for candidate in DEFAULT_FILES {
        let path = PathBuf::from(candidate);
        let exists = path.try_exists().map_err(|source| AuthError::LicenseFile {
            path: path.clone(),
            source,
        })?;
        if exists {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Reads and parses a license file; a missing or unreadable file is an error naming it.
pub fn load(path: &Path) -> Result<Keys, AuthError> {
    let bytes = std::fs::read(path).map_err(|source| AuthError::LicenseFile {
        path: path.to_owned(),
        source,
    })?;
    // Junk bytes make junk lines, which are skipped with a warning like any other.
    Ok(parse(
        &String::from_utf8_lossy(&bytes),
        &path.display().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_key_for_mydomain_com() {
        assert_eq!(
            key("mydomain.com", ORIGINAL_SECRET),
            "571ab3357c3e56e20b764f25e62149229f5d4b08"
        );
    }

    #[test]
    fn domains_reduce_to_two_labels_and_ips_stay_whole() {
        assert_eq!(licensed_domain("www.MyDomain.com."), "mydomain.com");
        assert_eq!(licensed_domain("a.b.c.mydomain.com"), "mydomain.com");
        assert_eq!(licensed_domain("mydomain.com"), "mydomain.com");
        assert_eq!(licensed_domain("localhost"), "localhost");
        assert_eq!(licensed_domain("10.1.2.3"), "10.1.2.3");
        assert_eq!(licensed_domain("[2001:db8::1]"), "2001:db8::1");
    }

    #[test]
    fn comments_blank_and_junk_lines() {
        let text = "# comment\n; another\n// and another\n\n  571AB3357C3E56E20B764F25E62149229F5D4B08  \nnot a key\n571ab3357c3e56e20b764f25e62149229f5d4b0\n\u{0}\u{1}garbage\n";
        let k = parse(text, "lic.txt");
        assert_eq!(k.keys.len(), 1);
        assert!(k.keys.contains("571ab3357c3e56e20b764f25e62149229f5d4b08"));
        assert_eq!(k.warnings.len(), 3);
        assert!(k.warnings[0].starts_with("lic.txt:6: "));
    }

    #[test]
    fn a_missing_configured_file_is_an_error_naming_it() {
        let path = Path::new("/nonexistent/realtime/license.txt");
        let e = load(path).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/realtime/license.txt"));
        assert_eq!(locate(Some(path)).unwrap(), Some(path.to_owned()));
    }
}
