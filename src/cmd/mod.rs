//! One module per subcommand.

pub mod bench;
pub mod json_line;
pub mod parse;
pub mod publish;
pub mod serve;
pub mod tail;
pub mod task;
pub mod token;
