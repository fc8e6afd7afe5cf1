//! Routes by topic pattern: one `[[route]]` for every topic whose name matches a regular
//! expression (Kafka Connect's `topics.regex`), each into its own table (`table = "{topic}"`,
//! or the pattern's groups: `{1}`, `{name}`, as Kafka Connect's `RegexRouter` renames) or
//! all into one.
//!
//! A pattern is expanded into ordinary routes against the topics the cluster has
//! ([`expand`]), so that everything after it (planning, lanes, exactly-once, dead letters)
//! deals with one route per topic as before. The pipeline expands again every
//! `table_refresh`, and a changed set of topics starts a new pass, as a changed table does.
//!
//! Which topics a pattern takes, and why:
//! - the whole name must match (`^(?:pattern)$`), as Java's `Pattern.matches` does for
//!   `topics.regex`, so `events` does not take `events.dlq` by accident;
//! - never Kafka's internal topics (`__consumer_offsets`, `__transaction_state`, ...);
//! - never a topic that a route names explicitly (that route has it);
//! - never a topic that is some route's dead-letter topic: reading dead letters back into a
//!   table would fill it with the rows that failed, and make dead letters of dead letters;
//! - a topic two patterns match goes to the first of them in the config.

use std::collections::HashSet;

use regex::Regex;

use super::raw::RawRoute;
use super::validate::{validate_route, BadMessages, Config, ConfigError, Route};

/// A route whose topics are those matching `regex`, and the route as written, whose fields
/// are validated again for each topic it takes.
#[derive(Debug, Clone)]
pub struct TopicPattern {
    /// The route's place in the config (`route[i]` in errors).
    pub index: usize,
    /// The pattern as written.
    pub source: String,
    regex: Regex,
    raw: RawRoute,
    database: String,
    /// The route made for a topic of an ordinary name, checked when the config was read.
    sample: Route,
}

/// What `{topic}` stands for in `table` and `dead_letter_table`.
const PLACEHOLDER: &str = "{topic}";

impl TopicPattern {
    /// Compiles the pattern of the raw route `r` (the `index`-th) and validates the route's other
    /// fields once, for a topic of an ordinary name, so that a mistake is reported at start
    /// rather than when the first topic matches.
    pub(super) fn new(index: usize, r: &RawRoute, database: &str) -> Result<Self, ConfigError> {
        let field = format!("route[{index}].topic_pattern");
        let source = r.topic_pattern.clone().unwrap_or_default();
        if source.trim().is_empty() {
            return Err(ConfigError {
                field,
                message: "is empty".into(),
            });
        }
        let regex = Regex::new(&format!("^(?:{source})$")).map_err(|e| ConfigError {
            field: field.clone(),
            message: format!("not a regular expression: {e}"),
        })?;
        let groups = regex.captures_len() - 1;
        let names: Vec<&str> = regex.capture_names().flatten().collect();
        for (name, text) in [("table", Some(&r.table)), ("database", r.database.as_ref())]
            .into_iter()
            .chain([("dead_letter_table", r.dead_letter_table.as_ref())])
        {
            if let Some(bad) = text.and_then(|t| unknown_placeholder(t, groups, &names)) {
                return Err(ConfigError {
                    field: format!("route[{index}].{name}"),
                    message: format!(
                        "{{{bad}}} is no group of topic_pattern {source:?} (it has {groups}{}); \
                     use {{topic}}, {{1}}..{{{groups}}} or a group's name",
                        if names.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", names.join(", "))
                        }
                    ),
                });
            }
        }
        let sample = route_for(index, r, database, &source, "sluice-pattern-sample", None)?;
        Ok(TopicPattern {
            index,
            source,
            regex,
            raw: r.clone(),
            database: database.to_string(),
            sample,
        })
    }

    /// The route as made for a topic of an ordinary name: what every topic's route shares
    /// (its format, delivery, limits).
    pub fn sample(&self) -> &Route {
        &self.sample
    }

    /// Whether the topic `name` matches the pattern as a whole.
    pub fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }

    /// The route this pattern makes for `topic`.
    fn route_for(&self, topic: &str) -> Result<Route, ConfigError> {
        let groups = self.regex.captures(topic);
        let named: Vec<&str> = self.regex.capture_names().flatten().collect();
        let values = groups.map(|c| {
            let mut v: Vec<(String, String)> = (1..c.len())
                .map(|i| {
                    (
                        i.to_string(),
                        c.get(i).map_or("", |m| m.as_str()).to_string(),
                    )
                })
                .collect();
            v.extend(named.iter().map(|n| {
                (
                    n.to_string(),
                    c.name(n).map_or("", |m| m.as_str()).to_string(),
                )
            }));
            v
        });
        route_for(
            self.index,
            &self.raw,
            &self.database,
            &self.source,
            topic,
            values.as_deref(),
        )
    }
}

/// The first `{...}` of `text` that is neither `{topic}` nor one of the pattern's groups
/// (`{1}`..`{groups}`, or a name of `names`).
fn unknown_placeholder(text: &str, groups: usize, names: &[&str]) -> Option<String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = rest.get(open + 1..)?;
        let close = after.find('}')?;
        let name = after.get(..close)?;
        let known = name == "topic"
            || names.contains(&name)
            || name
                .parse::<usize>()
                .is_ok_and(|n| (1..=groups).contains(&n));
        if !known {
            return Some(name.to_string());
        }
        rest = after.get(close + 1..)?;
    }
    None
}

/// `text` with `{topic}` and the pattern's groups (`values`: `("1", ...)`, `("name", ...)`;
/// `None` for the sample topic, whose groups are made up) in place. A group that took no
/// part in the match stands for "".
fn substitute(text: &str, topic: &str, values: Option<&[(String, String)]>) -> String {
    let mut out = text.replace(PLACEHOLDER, topic);
    match values {
        Some(values) => {
            for (name, value) in values {
                out = out.replace(&format!("{{{name}}}"), value);
            }
        }
        // The sample route: any group as a plain name, so the rest is checked as written.
        None => {
            while let (Some(open), Some(close)) = (out.find('{'), out.find('}')) {
                if close < open {
                    break;
                }
                out.replace_range(open..=close, "sample");
            }
        }
    }
    out
}

/// The route the pattern route `raw` (the `index`-th, pattern `source`) makes for `topic`:
/// the route as written, with `topic` as its topic and in place of `{topic}`, and the
/// pattern's groups (`values`) in place of theirs in `table`, `database` and
/// `dead_letter_table`.
fn route_for(
    index: usize,
    raw: &RawRoute,
    database: &str,
    source: &str,
    topic: &str,
    values: Option<&[(String, String)]>,
) -> Result<Route, ConfigError> {
    let mut raw = raw.clone();
    raw.topic = Some(topic.to_string());
    raw.topic_pattern = None;
    raw.table = substitute(&raw.table, topic, values);
    raw.database = raw.database.map(|d| substitute(&d, topic, values));
    raw.dead_letter_table = raw.dead_letter_table.map(|t| substitute(&t, topic, values));
    validate_route(index, &raw, database).map_err(|e| ConfigError {
        field: e.field,
        message: format!(
            "for topic {topic:?} of topic_pattern {source:?}: {}",
            e.message
        ),
    })
}

/// `cfg` with its patterns replaced by a route for each topic of `topics` they take (see the
/// module docs), in name order after the explicit routes. A config without patterns is
/// returned as it is. An error is a route field that is wrong for one of the topics (a
/// default dead-letter topic name too long for it, say).
pub fn expand<'a>(
    cfg: &Config,
    topics: impl IntoIterator<Item = &'a str>,
) -> Result<Config, ConfigError> {
    if cfg.patterns.is_empty() {
        return Ok(cfg.clone());
    }
    let explicit: HashSet<&str> = cfg.routes.iter().map(|r| r.topic.as_str()).collect();
    let mut names: Vec<&str> = topics
        .into_iter()
        .filter(|t| !t.starts_with("__") && !explicit.contains(t))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut taken = Vec::new();
    for name in names {
        if let Some(p) = cfg.patterns.iter().find(|p| p.matches(name)) {
            taken.push(p.route_for(name)?);
        }
    }
    let dead_letter_topics: HashSet<String> = cfg
        .routes
        .iter()
        .chain(&taken)
        .filter_map(|r| match &r.bad_messages {
            BadMessages::DeadLetter { topic } => Some(topic.clone()),
            _ => None,
        })
        .collect();
    taken.retain(|r| !dead_letter_topics.contains(&r.topic));
    let mut out = cfg.clone();
    out.routes.extend(taken);
    out.patterns.clear();
    Ok(out)
}

/// The topics `pattern` (one of `written`'s) took in `expanded`, the expansion of `written`.
pub fn taken_by<'a>(
    written: &Config,
    expanded: &'a Config,
    pattern: &TopicPattern,
) -> Vec<&'a str> {
    expanded
        .routes
        .iter()
        .skip(written.routes.len())
        .filter(|r| {
            written
                .patterns
                .iter()
                .find(|p| p.matches(&r.topic))
                .map(|p| p.index)
                == Some(pattern.index)
        })
        .map(|r| r.topic.as_str())
        .collect()
}

/// The topics of `cfg`'s routes, in order: what a pass of the pipeline reads.
pub fn topics(cfg: &Config) -> Vec<&str> {
    cfg.routes.iter().map(|r| r.topic.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_str;

    fn config(routes: &str) -> Config {
        let text = format!(
            "[kafka]\nbrokers = \"b:9092\"\ngroup_id = \"g\"\n\n[clickhouse]\nurl = \"http://c:8123\"\n\n{routes}"
        );
        from_str(&text, Vec::new()).unwrap()
    }

    fn routes(cfg: &Config) -> Vec<(String, String)> {
        cfg.routes
            .iter()
            .map(|r| (r.topic.clone(), r.table.clone()))
            .collect()
    }

    #[test]
    fn a_pattern_takes_whole_names_and_leaves_internal_explicit_and_dead_letter_topics() {
        let cfg = config(
            "[[route]]\ntopic = \"orders.eu\"\ntable = \"orders_eu_own\"\n\n[[route]]\ntopic_pattern = \"orders\\\\..*\"\ntable = \"t_{topic}\"\n\n[[route]]\ntopic_pattern = \"orders\\\\.us|clicks\"\ntable = \"second\"\non_bad_message = \"dead-letter\"\ndead_letter_topic = \"bad-clicks\"",
        );
        assert!(cfg.routes.len() == 1 && cfg.patterns.len() == 2);
        let topics = [
            "orders.us",
            "orders.eu",
            "orders.us.dlq",
            "orders.asia",
            "xorders.us",
            "__consumer_offsets",
            "clicks",
            "clicks.dlq",
            "bad-clicks",
            "orders.asia",
        ];
        let out = expand(&cfg, topics).unwrap();
        assert!(out.patterns.is_empty());
        assert_eq!(
            routes(&out),
            [
                ("orders.eu", "orders_eu_own"),
                ("clicks", "second"),
                ("orders.asia", "t_orders.asia"),
                ("orders.us", "t_orders.us"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        // Each topic's route is the written one, defaults made for that topic.
        let dlq = |r: &Route| match &r.bad_messages {
            BadMessages::DeadLetter { topic } => topic.clone(),
            _ => String::new(),
        };
        assert_eq!(dlq(&out.routes[3]), "orders.us.dlq");
        assert_eq!(dlq(&out.routes[1]), "bad-clicks");
        // No topics: the explicit routes alone.
        assert_eq!(routes(&expand(&cfg, []).unwrap()).len(), 1);
    }

    /// Debezium's `<prefix>.<database>.<table>` topics into a table and database each, by
    /// the pattern's groups (numbered and named), as Kafka Connect's `RegexRouter` renames;
    /// a placeholder that is no group is refused when the config is read.
    #[test]
    fn the_pattern_groups_name_each_topic_s_table_and_database() {
        let cfg = config(
            "[[route]]\ntopic_pattern = \"dbz\\\\.(?P<db>\\\\w+)\\\\.(\\\\w+)(_v\\\\d)?\"\ntable = \"{2}{3}_cdc\"\ndatabase = \"{db}\"\non_bad_message = \"dead-letter-table\"\ndead_letter_table = \"{2}_bad\"",
        );
        let out = expand(&cfg, ["dbz.shop.orders", "dbz.crm.people_v2", "dbz.x"]).unwrap();
        let got: Vec<(&str, &str, &str)> = out
            .routes
            .iter()
            .map(|r| (r.topic.as_str(), r.database.as_str(), r.table.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("dbz.crm.people_v2", "crm", "people_v2_cdc"),
                ("dbz.shop.orders", "shop", "orders_cdc"),
            ]
        );
        match &out.routes[1].bad_messages {
            BadMessages::DeadLetterTable { database, table } => {
                assert_eq!((database.as_str(), table.as_str()), ("shop", "orders_bad"))
            }
            other => panic!("{other:?}"),
        }
        let text = |table: &str| {
            format!("[kafka]\nbrokers = \"b:9092\"\ngroup_id = \"g\"\n\n[clickhouse]\nurl = \"http://c:8123\"\n\n[[route]]\ntopic_pattern = \"a\\\\.(?P<t>\\\\w+)\"\ntable = \"{table}\"")
        };
        for (table, says) in [
            ("{2}", "{2} is no group of topic_pattern"),
            ("{0}", "{0} is no group"),
            ("{name}", "(it has 1: t)"),
        ] {
            let e = from_str(&text(table), Vec::new()).unwrap_err();
            assert_eq!(e.field, "route[0].table", "{table}");
            assert!(e.to_string().contains(says), "{table}: {e}");
        }
        for ok in ["{1}", "{t}", "x_{topic}_{1}"] {
            assert!(from_str(&text(ok), Vec::new()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_pattern_is_checked_when_the_config_is_read() {
        let text = |route: &str| {
            format!("[kafka]\nbrokers = \"b:9092\"\ngroup_id = \"g\"\n\n[clickhouse]\nurl = \"http://c:8123\"\n\n[[route]]\n{route}")
        };
        for (route, field, says) in [
            (
                "topic_pattern = \"(\"\ntable = \"t\"",
                "route[0].topic_pattern",
                "not a regular expression",
            ),
            (
                "topic_pattern = \"\"\ntable = \"t\"",
                "route[0].topic_pattern",
                "empty",
            ),
            (
                "topic = \"a\"\ntopic_pattern = \"a.*\"\ntable = \"t\"",
                "route[0].topic_pattern",
                "not both",
            ),
            ("table = \"t\"", "route[0].topic", "topic_pattern"),
            (
                "topic_pattern = \"a.*\"\ntable = \"t\"\nmax_rows = 0",
                "route[0].max_rows",
                "at least 1",
            ),
        ] {
            let e = from_str(&text(route), Vec::new()).unwrap_err();
            assert_eq!(e.field, field, "{route}: {e}");
            assert!(e.message.contains(says), "{route}: {e}");
        }
        // A topic whose default dead-letter topic would be too long: named with the topic.
        let cfg = config("[[route]]\ntopic_pattern = \"a.*\"\ntable = \"t\"");
        let long = "a".repeat(249);
        let e = expand(&cfg, [long.as_str()]).unwrap_err();
        assert_eq!(e.field, "route[0].dead_letter_topic");
        assert!(e.message.contains("topic_pattern \"a.*\""), "{e}");
    }
}
