//! `unknown_fields = "add"`: a JSON field that no column reads gets a column of its own,
//! as clickhouse_sinker's dynamic schema does.
//!
//! What holds:
//! - **Idempotent.** Every lane that meets the field, on every shard, asks for the same
//!   column; a column that exists already (Code 15 on 26.9, 44 on 18.16, which has no `ADD
//!   COLUMN IF NOT EXISTS`) is success, so lanes racing each other agree without talking.
//! - **Nothing stored before the plan has the column.** The lane that met the field stops
//!   before the message and ends the pass as a changed table does (`pipeline`); the next
//!   pass plans the table with the column and reads from the committed offsets, so the
//!   message and every later one are encoded with it.
//! - **The types a server has.** `Bool` (from 21.12) is `UInt8` on older servers, as
//!   sluice writes booleans into integer columns as 1 and 0.

use super::sql::{qualified, quote_ident};
use super::version::Version;
use super::{ChError, Client};

/// What adding the column did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The table has it now.
    New,
    /// It was there already (another lane or instance added it, or a user did).
    Existing,
}

/// Codes of "a column with this name already exists": 15 (`DUPLICATE_COLUMN`, 26.9) and 44
/// (`ILLEGAL_COLUMN`, as 18.16 answers it).
const ALREADY_EXISTS: [u32; 2] = [15, 44];

/// The first version with the `Bool` type.
const BOOL_SINCE: Version = Version::new(21, 12, 0);

/// The statement that adds column `name` of `column_type` (as `json` infers it) on a server
/// of `version`.
pub fn statement(
    database: &str,
    table: &str,
    name: &str,
    column_type: &str,
    version: Version,
) -> String {
    let ty = if version < BOOL_SINCE {
        column_type.replace("Bool", "UInt8")
    } else {
        column_type.to_string()
    };
    format!(
        "ALTER TABLE {} ADD COLUMN {} {ty}",
        qualified(database, table),
        quote_ident(name)
    )
}

/// Adds column `name` of `column_type` to `database.table` on `client`'s server.
pub async fn add_column(
    client: &Client,
    database: &str,
    table: &str,
    name: &str,
    column_type: &str,
) -> Result<Added, ChError> {
    let sql = statement(database, table, name, column_type, client.server().version);
    match client.query(&sql).await {
        Ok(_) => Ok(Added::New),
        Err(ChError::Server {
            code: Some(code), ..
        }) if ALREADY_EXISTS.contains(&code) => Ok(Added::Existing),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_quotes_the_name_and_keeps_to_the_server_types() {
        let new = Version::new(26, 9, 2);
        assert_eq!(
            statement("db", "t", "a`b c", "Nullable(Bool)", new),
            "ALTER TABLE `db`.`t` ADD COLUMN `a\\`b c` Nullable(Bool)"
        );
        assert_eq!(
            statement(
                "db",
                "t",
                "flags",
                "Array(Nullable(Bool))",
                Version::new(18, 16, 1)
            ),
            "ALTER TABLE `db`.`t` ADD COLUMN `flags` Array(Nullable(UInt8))"
        );
        assert_eq!(
            statement("db", "t", "n", "Nullable(Int64)", Version::new(18, 16, 1)),
            "ALTER TABLE `db`.`t` ADD COLUMN `n` Nullable(Int64)"
        );
    }
}
