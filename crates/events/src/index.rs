//! The rules of one bus, indexed so matching an event does not try every
//! rule. Most rules name a `source` (or failing that a `detail-type`)
//! with exact values or prefixes: such a rule is filed under each, and an
//! event only tries the rules filed under its own source and detail-type
//! (and under their prefixes), plus those that could not be filed. A rule
//! is always confirmed by its full pattern.

use std::collections::HashMap;

use serde_json::Value;
use wisp_core::pattern::{Pattern, Required};

use crate::model::Rule;

/// The fields rules are filed under, in order of preference.
const KEYS: [&str; 2] = ["source", "detail-type"];

/// A rule ready to match.
pub struct Compiled {
    pub rule: Rule,
    pub pattern: Pattern,
}

/// The enabled pattern rules of one bus.
#[derive(Default)]
pub struct RuleSet {
    pub rules: Vec<Compiled>,
    /// For each of `KEYS`: value -> the rules filed under it.
    filed: [HashMap<String, Vec<usize>>; 2],
    /// For each of `KEYS`: prefix -> the rules filed under it.
    prefixed: [HashMap<String, Vec<usize>>; 2],
    /// Rules with no exact value for any of `KEYS`.
    unfiled: Vec<usize>,
}

impl RuleSet {
    /// Indexes `rules` (disabled ones and those without a valid pattern
    /// are left out).
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> RuleSet {
        let mut set = RuleSet::default();
        for rule in rules {
            if !rule.enabled() {
                continue;
            }
            let Some(pattern) = rule
                .event_pattern
                .as_deref()
                .and_then(|p| Pattern::parse(p).ok())
            else {
                continue;
            };
            let i = set.rules.len();
            let filed = KEYS.iter().enumerate().find_map(|(k, key)| {
                let required = pattern.required(key)?;
                Some(
                    required
                        .into_iter()
                        .map(|r| match r {
                            Required::Exact(v) => (k, false, v.to_string()),
                            Required::Prefix(p) => (k, true, p.to_string()),
                        })
                        .collect::<Vec<_>>(),
                )
            });
            match filed {
                Some(entries) => {
                    for (k, prefix, v) in entries {
                        let map = match prefix {
                            false => &mut set.filed[k],
                            true => &mut set.prefixed[k],
                        };
                        map.entry(v).or_default().push(i);
                    }
                }
                None => set.unfiled.push(i),
            }
            set.rules.push(Compiled { rule, pattern });
        }
        set
    }

    /// The rules `event` matches, in the order they were given.
    pub fn matching(&self, event: &Value) -> Vec<&Compiled> {
        let mut candidates: Vec<usize> = self.unfiled.clone();
        for (k, key) in KEYS.iter().enumerate() {
            let (exact, prefixed) = (&self.filed[k], &self.prefixed[k]);
            if exact.is_empty() && prefixed.is_empty() {
                continue;
            }
            let mut look = |v: &Value| {
                let Some(s) = v.as_str() else { return };
                if let Some(rules) = exact.get(s) {
                    candidates.extend(rules);
                }
                if prefixed.is_empty() {
                    return;
                }
                // Every prefix of the value, the empty one included.
                for (i, _) in s.char_indices().chain(std::iter::once((s.len(), ' '))) {
                    if let Some(rules) = prefixed.get(&s[..i]) {
                        candidates.extend(rules);
                    }
                }
            };
            match event.get(key) {
                Some(Value::Array(items)) => items.iter().for_each(&mut look),
                Some(v) => look(v),
                None => {}
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .map(|i| &self.rules[i])
            .filter(|c| c.pattern.matches(event))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn rule(name: &str, pattern: Value) -> Rule {
        Rule {
            name: name.into(),
            event_bus_name: "default".into(),
            event_pattern: Some(pattern.to_string()),
            state: "ENABLED".into(),
            ..Default::default()
        }
    }

    fn names(set: &RuleSet, event: &Value) -> Vec<String> {
        set.matching(event)
            .into_iter()
            .map(|c| c.rule.name.clone())
            .collect()
    }

    #[test]
    fn filed_and_unfiled_rules_match_as_their_patterns_say() {
        let mut disabled = rule("off", json!({"source": ["shop"]}));
        disabled.state = "DISABLED".into();
        let set = RuleSet::new([
            rule("by-source", json!({"source": ["shop", "billing"]})),
            rule("by-type", json!({"detail-type": ["Order Placed"]})),
            rule("prefix", json!({"source": [{"prefix": "sh"}]})),
            rule(
                "detail",
                json!({"source": ["shop"], "detail": {"n": [{"numeric": [">", 2]}]}}),
            ),
            disabled,
        ]);
        let e = json!({"source": "shop", "detail-type": "Order Placed", "detail": {"n": 3}});
        assert_eq!(
            names(&set, &e),
            ["by-source", "by-type", "prefix", "detail"]
        );
        let e = json!({"source": "billing", "detail-type": "x", "detail": {"n": 3}});
        assert_eq!(names(&set, &e), ["by-source"]);
        let e = json!({"source": ["a", "shop"], "detail": {"n": 1}});
        assert_eq!(names(&set, &e), ["by-source", "prefix"]);
    }

    fn value() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c", "ab", "shop"]).prop_map(String::from)
    }

    proptest! {
        /// The index finds exactly what trying every rule finds.
        #[test]
        fn the_index_agrees_with_trying_every_rule(
            sources in prop::collection::vec(prop::collection::vec(value(), 1..3), 0..12),
            prefixes in prop::collection::vec(value(), 0..4),
            event_source in value(),
            event_type in value(),
        ) {
            let mut rules = Vec::new();
            for (i, s) in sources.iter().enumerate() {
                let pattern = match i % 3 {
                    0 => json!({"source": s}),
                    1 => json!({"detail-type": s}),
                    _ => json!({"source": s, "detail-type": [event_type.clone()]}),
                };
                rules.push(rule(&format!("r{i}"), pattern));
            }
            for (i, p) in prefixes.iter().enumerate() {
                let pattern = match i % 3 {
                    0 => json!({"source": [{"prefix": p}]}),
                    1 => json!({"source": [{"prefix": p}, event_type.clone()]}),
                    _ => json!({"detail-type": [{"suffix": p}]}),
                };
                rules.push(rule(&format!("p{i}"), pattern));
            }
            let set = RuleSet::new(rules.clone());
            let event = json!({"source": event_source, "detail-type": event_type});
            let want: Vec<String> = rules
                .iter()
                .filter(|r| Pattern::parse(r.event_pattern.as_ref().unwrap()).unwrap().matches(&event))
                .map(|r| r.name.clone())
                .collect();
            prop_assert_eq!(names(&set, &event), want);
        }
    }
}
