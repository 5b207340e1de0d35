//! Writing command output to stdout: aligned tables, and a quiet stop when the reader goes away
//! (`logbrook topic list | head`).

use std::io::Write;

use anyhow::{Context, Result};

/// Writes `text` to stdout. A closed pipe is not an error: the reader has what it wanted.
///
/// # Errors
/// Any other write error.
pub fn print(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// Writes `bytes` to stdout and flushes. Blocks (stdout may be a slow pipe): call it off the
/// runtime's workers. Large writes go straight to the file descriptor: stdout's line buffer
/// only holds a tail without a newline.
///
/// # Errors
/// The write error, `BrokenPipe` when the reader is gone.
pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush())
}

/// A table printed with left-aligned, space-separated columns.
#[derive(Debug)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row; cells beyond the header's width are ignored.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table, one line per row.
    pub fn render(&self) -> String {
        let columns = self.rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, String::len))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, width) in widths.iter().enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                if c + 1 == columns {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  "));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_are_aligned_to_the_widest_cell() {
        let mut table = Table::new(&["A", "LONG"]);
        table.row(vec!["wide cell".into(), "1".into()]);
        assert_eq!(table.render(), "A          LONG\nwide cell  1\n");
    }
}
