//! Kafka's rules for a topic name, checked before any client sees one.
//!
//! The broker refuses an illegal name with an error, but librdkafka refuses some before a
//! request is made (a name over 512 bytes makes `rd_kafka_topic_new` return NULL, which
//! rust-rdkafka 0.39 unwraps: a panic in `fetch_metadata`). So every name that comes from a
//! user (a route's topic, its dead-letter topic, the tools' `--topic` and topic arguments) is
//! checked here first and refused with the rule it breaks. The rules are the broker's own
//! (`org.apache.kafka.common.internals.Topic.validate`): 1-249 characters of ASCII letters,
//! digits, `.`, `_` and `-`, and neither `.` nor `..`.

/// The longest name a broker accepts (its log directories append a partition suffix).
pub const MAX_LEN: usize = 249;

/// `Ok` when Kafka accepts `name` as a topic name; otherwise which rule it breaks.
pub fn check(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a topic name must not be empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a legal topic name"));
    }
    if name.len() > MAX_LEN {
        return Err(format!(
            "a topic name has at most {MAX_LEN} characters; this one has {}",
            name.chars().count()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; Kafka allows only ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// [`check`] as a clap value parser, for the tools' topic arguments.
pub fn parse(name: &str) -> Result<String, String> {
    check(name).map(|()| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_names_pass() {
        for n in [
            "events",
            "a",
            "events.dlq",
            "my_topic-2",
            "...",
            &"x".repeat(MAX_LEN),
        ] {
            assert_eq!(check(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn illegal_names_say_which_rule_they_break() {
        assert!(check("").unwrap_err().contains("empty"));
        assert!(check(".").unwrap_err().contains("not a legal"));
        assert!(check("..").unwrap_err().contains("not a legal"));
        let long = "x".repeat(MAX_LEN + 1);
        assert!(check(&long).unwrap_err().contains("at most 249"));
        assert!(check(&"x".repeat(600)).unwrap_err().contains("has 600"));
        let e = check("bad name").unwrap_err();
        assert!(e.contains("' '") && e.contains("bad name"), "{e}");
        assert!(check("tópico").unwrap_err().contains("'ó'"));
        assert!(check("a/b").is_err());
        assert!(check("a\0b").is_err());
        assert_eq!(parse("events"), Ok("events".to_string()));
        assert!(parse("a b").is_err());
    }
}
