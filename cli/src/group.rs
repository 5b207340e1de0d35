//! `logbrook group`: list and describe consumer groups, and move their committed offsets.

use std::path::Path;

use anyhow::{Context, Result};
use clap::{ArgGroup, Args, Subcommand};
use logbrook_core::ResetTarget;

use crate::output::{self, Table};
use crate::target::{Access, ClusterArgs};

/// `logbrook group` subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups with committed offsets, one per line.
    List,
    /// Show a group's committed offset, end offset and lag per partition.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets on every partition of a topic.
    Reset(ResetArgs),
}

/// Arguments of `logbrook group reset`; exactly one `--to-*` target is required.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_time"])
))]
pub struct ResetArgs {
    /// Group id.
    group: String,
    /// Topic whose partitions are reset.
    #[arg(long)]
    topic: String,
    /// To the first offset still in each partition.
    #[arg(long)]
    to_earliest: bool,
    /// To the end of each partition (skip everything written so far).
    #[arg(long)]
    to_latest: bool,
    /// To this offset, clamped into each partition.
    #[arg(long, value_name = "N")]
    to_offset: Option<u64>,
    /// To each partition's first record at or after this time.
    #[arg(long, value_name = "RFC3339", value_parser = crate::parse_time)]
    to_time: Option<i64>,
    /// Show the changes without committing them.
    #[arg(long)]
    dry_run: bool,
}

impl ResetArgs {
    fn target(&self) -> ResetTarget {
        // clap's ArgGroup guarantees exactly one of these is set.
        if let Some(offset) = self.to_offset {
            ResetTarget::Offset(offset)
        } else if let Some(time) = self.to_time {
            ResetTarget::Timestamp(time)
        } else if self.to_latest {
            ResetTarget::Latest
        } else {
            ResetTarget::Earliest
        }
    }
}

/// Runs a `logbrook group` subcommand.
///
/// # Errors
/// Unknown groups or topics, a missing or locked data dir, an unreachable cluster.
pub async fn run(data_dir: &Path, cluster: &ClusterArgs, command: GroupCommand) -> Result<()> {
    match command {
        GroupCommand::List => {
            let client = cluster.open(data_dir, Access::ReadOnly).await?;
            let mut text = String::new();
            for group in client.group_names().await? {
                text.push_str(&group);
                text.push('\n');
            }
            output::print(&text)
        }
        GroupCommand::Describe { group } => {
            let client = cluster.open(data_dir, Access::ReadOnly).await?;
            let description = client.describe_group(&group).await?;
            let mut table = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "END OFFSET", "LAG"]);
            for p in &description.partitions {
                table.row(vec![
                    p.topic_partition.topic.clone(),
                    p.topic_partition.partition.to_string(),
                    p.committed.map_or_else(|| "-".into(), |c| c.to_string()),
                    p.log_end_offset.to_string(),
                    p.lag.to_string(),
                ]);
            }
            let total: u64 = description.partitions.iter().map(|p| p.lag).sum();
            output::print(&format!(
                "group {group:?}, total lag {total}\n\n{}",
                table.render()
            ))
        }
        GroupCommand::Reset(args) => {
            let client = cluster.open(data_dir, Access::Write).await?;
            let changes = client
                .reset_group_offsets(&args.group, &args.topic, args.target(), args.dry_run)
                .await
                .with_context(|| {
                    format!("resetting group {:?} on topic {:?}", args.group, args.topic)
                });
            client.close().await?;
            let mut text = String::new();
            for change in changes? {
                let previous = change
                    .previous
                    .map_or_else(|| "none".into(), |p| p.to_string());
                text.push_str(&format!(
                    "{}-{}: {previous} -> {}\n",
                    args.topic, change.partition, change.new
                ));
            }
            if args.dry_run {
                text.push_str("dry run: nothing was changed\n");
            } else {
                text.push_str(&format!(
                    "committed the new offsets of group {:?}\n",
                    args.group
                ));
            }
            output::print(&text)
        }
    }
}
