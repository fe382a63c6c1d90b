//! Aligned columns and `Name: value` blocks for the admin commands' table output.

use std::io::{self, Write};

/// Rows under a header line, each column as wide as its widest cell, two spaces apart.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells print empty, extra cells are kept).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes the header and the rows; the last column is not padded.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0; columns];
        for line in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in line.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        for line in std::iter::once(&self.header).chain(&self.rows) {
            let mut text = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = line.get(i).map_or("", String::as_str);
                if i + 1 == columns {
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    let pad = width - cell.chars().count() + 2;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(out, "{}", text.trim_end())?;
        }
        Ok(())
    }
}

/// Writes `Name: value` lines with the values aligned, as Kafka's describe commands print.
pub fn write_fields(out: &mut dyn Write, fields: &[(&str, String)]) -> io::Result<()> {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in fields {
        writeln!(out, "{:<w$}{v}", format!("{k}:"), w = width + 2)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut t = Table::new(&["Id", "State"]);
        t.row(vec!["1".into(), "active".into()]);
        t.row(vec!["100".into(), "fenced".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Id   State\n1    active\n100  fenced\n"
        );
    }

    #[test]
    fn field_values_line_up() {
        let mut out = Vec::new();
        write_fields(
            &mut out,
            &[("LeaderId", "1".into()), ("ClusterId", "x".into())],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "LeaderId:  1\nClusterId: x\n"
        );
    }
}
