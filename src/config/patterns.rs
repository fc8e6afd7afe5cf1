//! Routes by topic pattern: one `[[route]]` for every topic whose name matches a regular
//! expression (Kafka Connect's `topics.regex`), each into its own table (`table = "{topic}"`)
//! or all into one.
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
        let sample = route_for(index, r, database, &source, "sluice-pattern-sample")?;
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
        route_for(self.index, &self.raw, &self.database, &self.source, topic)
    }
}

/// The route the pattern route `raw` (the `index`-th, pattern `source`) makes for `topic`:
/// the route as written, with `topic` as its topic and in place of `{topic}`.
fn route_for(
    index: usize,
    raw: &RawRoute,
    database: &str,
    source: &str,
    topic: &str,
) -> Result<Route, ConfigError> {
    let mut raw = raw.clone();
    raw.topic = Some(topic.to_string());
    raw.topic_pattern = None;
    raw.table = raw.table.replace(PLACEHOLDER, topic);
    raw.dead_letter_table = raw.dead_letter_table.map(|t| t.replace(PLACEHOLDER, topic));
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
