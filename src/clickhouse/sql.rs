//! Quoting of identifiers and string literals for the SQL this client builds.
//!
//! Guarantee: any Rust string (quotes, backslashes, backticks, newlines, non-ASCII) becomes a
//! single token that ClickHouse reads back as exactly that string, on 18.16 as on 26.9 (both
//! read backslash escapes inside `` `...` `` and `'...'`). Server-side query parameters would
//! avoid quoting altogether but do not exist before 19.11, and identifiers cannot be
//! parameters in an INSERT's table/column list anyway.

/// Quotes an identifier with backticks: `` a`b `` -> `` `a\`b` ``.
pub fn quote_ident(name: &str) -> String {
    quote(name, '`')
}

/// Quotes a string literal with single quotes: `it's` -> `'it\'s'`.
pub fn quote_str(value: &str) -> String {
    quote(value, '\'')
}

/// `` `db`.`table` ``.
pub fn qualified(database: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(database), quote_ident(table))
}

fn quote(s: &str, q: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(quote_ident("plain"), "`plain`");
        assert_eq!(quote_ident("a`b"), "`a\\`b`");
        assert_eq!(quote_ident("a\\b"), "`a\\\\b`");
        assert_eq!(quote_ident("it's"), "`it's`");
        assert_eq!(quote_ident("new\nline"), "`new\\nline`");
        assert_eq!(quote_ident("ключ"), "`ключ`");
        assert_eq!(quote_ident(""), "``");
        assert_eq!(qualified("db", "t.x"), "`db`.`t.x`");
    }

    #[test]
    fn strings() {
        assert_eq!(quote_str("it's"), "'it\\'s'");
        assert_eq!(quote_str("back\\slash"), "'back\\\\slash'");
        assert_eq!(quote_str("a`b"), "'a`b'");
        assert_eq!(quote_str("tab\there"), "'tab\\there'");
        assert_eq!(quote_str("nul\0"), "'nul\\0'");
    }
}
