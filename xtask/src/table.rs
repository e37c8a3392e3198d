//! The text tables the benchmark tasks print: a header, a rule, and rows
//! whose columns are padded to line up (the first column left-aligned, the
//! figures right-aligned).

use std::fmt;

/// A table of text cells.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column names.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|&h| h.to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells at its end are blank.
    ///
    /// # Panics
    /// If the row has more cells than the table has columns.
    pub fn row(&mut self, cells: Vec<String>) {
        assert!(
            cells.len() <= self.header.len(),
            "a row of {} cells in a table of {} columns",
            cells.len(),
            self.header.len()
        );
        self.rows.push(cells);
    }
}

/// `value` with `decimals` decimals, or `-` if there is none.
pub fn cell(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| {
            let padded: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(c, &w)| {
                    let text = cells.get(c).map_or("", String::as_str);
                    if c == 0 {
                        format!("{text:<w$}")
                    } else {
                        format!("{text:>w$}")
                    }
                })
                .collect();
            writeln!(f, "{}", padded.join(" | ").trim_end())
        };
        line(f, &self.header)?;
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        writeln!(f, "{}", rule.join("-+-"))?;
        for row in &self.rows {
            line(f, row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&["impl", "wall s", "note"]);
        t.row(vec!["G1".into(), "1.25".into(), "-".into()]);
        t.row(vec!["throughput".into(), "10.5".into()]);
        let text = t.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "impl       | wall s | note",
                "-----------+--------+-----",
                "G1         |   1.25 |    -",
                "throughput |   10.5 |",
            ]
        );
    }

    #[test]
    #[should_panic(expected = "a row of 2 cells in a table of 1 columns")]
    fn too_many_cells_panic() {
        Table::new(&["a"]).row(vec!["1".into(), "2".into()]);
    }

    #[test]
    fn cells_of_missing_values_are_dashes() {
        assert_eq!(cell(Some(1.23456), 2), "1.23");
        assert_eq!(cell(Some(2.0), 0), "2");
        assert_eq!(cell(None, 3), "-");
    }
}
