//! The command-line tools that belong to the job: topics, produce, consume, lag. They connect
//! with the same `[kafka]` settings (security included) as the pipeline.

pub mod consume;
pub mod produce;
pub mod registry_encode;
pub mod topics;
