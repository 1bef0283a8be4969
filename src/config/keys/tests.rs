//! The key table against the setters, the built-in defaults and etc/realtime.conf.

use std::collections::BTreeMap;

use super::*;
use crate::config::{ConfigError, SECTIONS};

/// Both cluster timings set, so a sample for one of them cannot trip the rule that
/// `node-timeout` exceeds `heartbeat`; a Redis Cluster, which `bus-shards` needs.
const BASE: &str = "[Cluster]\nredis = redis+cluster://r:7000\nheartbeat = 1s\nnode-timeout = 1h\n";

fn parse_one(key: &Key, value: &str) -> Result<Config, ConfigError> {
    let text = format!("{BASE}[{}]\n{} = {value}\n", key.section, key.name);
    Config::parse(&text, "t.conf")
}

#[test]
fn every_documented_default_is_the_real_default() {
    for key in KEYS {
        let set = parse_one(key, key.default)
            .unwrap_or_else(|e| panic!("[{}] {}: {e}", key.section, key.name));
        assert!(
            !(key.changed)(&Config::default(), &set),
            "[{}] {} = {:?} is not the built-in default",
            key.section,
            key.name,
            key.default
        );
    }
}

#[test]
fn every_key_takes_the_values_of_its_documented_type() {
    for key in KEYS {
        let (good, bad) = key.kind.samples();
        assert!(
            parse_one(key, &good).is_ok(),
            "[{}] {} refuses {good:?}, a {}",
            key.section,
            key.name,
            key.kind.describe()
        );
        if let Some(bad) = bad {
            assert!(
                matches!(parse_one(key, bad), Err(ConfigError::InvalidValue { .. })),
                "[{}] {} takes {bad:?}, not a {}",
                key.section,
                key.name,
                key.kind.describe()
            );
        }
    }
}

#[test]
fn keys_are_unique_and_in_known_sections() {
    let mut seen = std::collections::HashSet::new();
    for key in KEYS {
        assert!(SECTIONS.contains(&key.section), "{}", key.section);
        assert!(seen.insert((key.section, key.name)), "{}", key.name);
        assert_eq!(key.name, key.name.to_ascii_lowercase());
        assert!(!key.about.is_empty() && !key.about.contains('\n'));
    }
    for (section, name, _) in LEGACY {
        assert!(
            find(section, name).is_none(),
            "{name} is both live and legacy"
        );
    }
}

#[test]
fn unknown_keys_are_refused_and_legacy_keys_warn() {
    let err = Config::parse("[Server]\nno-such-key = 1\n", "t.conf").unwrap_err();
    assert!(matches!(err, ConfigError::UnknownKey { .. }), "{err}");
    for (section, name, instead) in LEGACY {
        let c = Config::parse(&format!("[{section}]\n{name} = x\n"), "t.conf").unwrap();
        assert!(c.warnings()[0].contains(instead), "{:?}", c.warnings());
    }
}

/// `(section, key) → value` of etc/realtime.conf; a commented-out key (`#key = value`,
/// no space after `#`) or an empty one has no value: its default is unset.
fn sample_keys() -> BTreeMap<(String, String), Option<String>> {
    let text = include_str!("../../../etc/realtime.conf");
    let mut section = String::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (commented, entry) = match line.strip_prefix('#') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let Some((name, value)) = entry.split_once(" =") else {
            continue;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            continue;
        }
        let value = value.trim();
        let value = (!commented && !value.is_empty()).then(|| value.to_owned());
        let previous = out.insert((section.clone(), name.to_owned()), value);
        assert!(
            previous.is_none(),
            "etc/realtime.conf: [{section}] {name} twice"
        );
    }
    out
}

#[test]
fn the_sample_configuration_shows_every_key_with_its_default() {
    let sample = sample_keys();
    let table: BTreeMap<(String, String), Option<String>> = KEYS
        .iter()
        .map(|k| {
            let default = (!k.default.is_empty()).then(|| k.default.to_owned());
            ((k.section.to_owned(), k.name.to_owned()), default)
        })
        .collect();
    let only_sample: Vec<_> = sample.keys().filter(|k| !table.contains_key(*k)).collect();
    let only_table: Vec<_> = table.keys().filter(|k| !sample.contains_key(*k)).collect();
    assert!(
        only_sample.is_empty(),
        "not in the key table: {only_sample:?}"
    );
    assert!(
        only_table.is_empty(),
        "not in etc/realtime.conf: {only_table:?}"
    );
    for (key, value) in &sample {
        assert_eq!(
            value, &table[key],
            "etc/realtime.conf {key:?}: a commented-out key has no default, a set one shows it"
        );
    }
}

#[test]
fn the_reference_lists_every_key() {
    let page = crate::config::reference();
    for key in KEYS {
        let row = format!("| `{}` | {} |", key.name, key.kind.describe());
        assert!(page.contains(&row), "{row}");
    }
    for section in SECTIONS {
        assert!(page.contains(&format!("## [{section}]")), "{section}");
    }
}
