//! `logbrook streams`: manage streams applications, e.g. reset one to reprocess its input.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Subcommand;
use logbrook_core::ResetTarget;

use crate::output;
use crate::target::{Access, ClusterArgs};

/// `logbrook streams` subcommands.
#[derive(Debug, Subcommand)]
pub enum StreamsCommand {
    /// Reset an application to reprocess its input: committed input offsets to the earliest
    /// (or to a time), internal topics and local state deleted. Stop the application first.
    Reset {
        /// The application id.
        app_id: String,
        /// Reprocess from each input partition's first record at or after this time.
        #[arg(long, value_name = "RFC3339", value_parser = crate::parse_time)]
        to_time: Option<i64>,
        /// Show what would be reset without changing anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

/// Runs a `logbrook streams` subcommand.
///
/// # Errors
/// An unknown application, a locked data dir or a group with members (the application is
/// still running), an unreachable cluster.
pub async fn run(data_dir: &Path, command: StreamsCommand) -> Result<()> {
    match command {
        StreamsCommand::Reset {
            app_id,
            to_time,
            dry_run,
            cluster,
        } => {
            let client = cluster
                .open(data_dir, Access::Write)
                .await
                .context("the application must be stopped before a reset")?;
            let target = to_time.map_or(ResetTarget::Earliest, ResetTarget::Timestamp);
            let report =
                logbrook_streams::reset_application(&client, &app_id, target, dry_run).await;
            client.close().await?;
            let report = report.with_context(|| format!("resetting application {app_id:?}"))?;
            let mut text = String::new();
            for (topic, changes) in &report.inputs {
                for change in changes {
                    let previous = change
                        .previous
                        .map_or_else(|| "none".into(), |p| p.to_string());
                    text.push_str(&format!(
                        "input {topic}-{}: {previous} -> {}\n",
                        change.partition, change.new
                    ));
                }
            }
            for topic in &report.internal_topics {
                text.push_str(&format!("internal topic {topic}: deleted\n"));
            }
            if let Some(dir) = &report.state_dir {
                text.push_str(&format!("local state {}: deleted\n", dir.display()));
            }
            if dry_run {
                text.push_str("dry run: nothing was changed\n");
            } else {
                text.push_str(&format!(
                    "application {app_id:?} reset; its next run reprocesses from the new offsets\n"
                ));
            }
            output::print(&text)
        }
    }
}
