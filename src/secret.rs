//! A secret string (password, SASL credential) that never prints itself.
//!
//! `Debug` and `Display` both render `***`, so a secret that ends up in a log line, an error
//! message or `sluice check` output by accident shows nothing. The only way to read it is
//! [`Secret::expose`], which is called where the value is handed to a client library.

use std::fmt;

/// A value that must never appear in logs, metrics or error messages.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to a client library. Never format the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replaces every occurrence of the secret in `text` with `***`. Used on messages that
    /// come back from servers or libraries, which may echo what they were given.
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 3 {
            // Replacing a one- or two-character password would mangle ordinary text and
            // reveal the password by where the stars appear.
            return text.to_string();
        }
        text.replace(&self.0, "***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let s = Secret::new("hunter22");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter22");
        assert_eq!(s.scrub("login hunter22 failed"), "login *** failed");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
    }

    #[test]
    fn redacted_inside_derived_debug() {
        #[derive(Debug)]
        #[allow(dead_code)] // only Debug reads the fields
        struct Holder {
            password: Secret,
        }
        let h = Holder {
            password: Secret::from("pa55"),
        };
        assert!(!format!("{h:?}").contains("pa55"));
        assert_eq!(Secret::from(String::from("x")).expose(), "x");
    }

    #[test]
    fn short_secrets_are_not_scrubbed_into_noise() {
        assert_eq!(Secret::new("ab").scrub("a b ab"), "a b ab");
    }
}
