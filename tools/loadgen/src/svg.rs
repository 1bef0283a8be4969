//! A grouped bar chart as a standalone SVG: one group per figure, one bar per server, the
//! median as the bar and the min–max of the rounds as a whisker. Log scale, because the
//! servers compared differ by orders of magnitude.

use std::fmt::Write as _;

/// One bar: median, min, max of the rounds (NaN when the server has no run of it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bar {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub(crate) struct Chart<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    /// Names of the bars in each group (the servers), in colour order.
    pub series: &'a [String],
    /// Each group: its label and one bar per series.
    pub groups: Vec<(String, Vec<Bar>)>,
}

const COLOURS: [&str; 4] = ["#d9480f", "#1971c2", "#2f9e44", "#7048e8"];
/// The narrowest chart; a wider one gives each bar room for its value label.
const MIN_W: f64 = 760.0;
/// Width per bar, and between groups, past which labels stop overlapping.
const BAR_ROOM: f64 = 34.0;
const GROUP_GAP: f64 = 24.0;
const H: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 70.0;

impl Chart<'_> {
    pub(crate) fn render(&self) -> String {
        let values: Vec<f64> = self
            .groups
            .iter()
            .flat_map(|(_, bars)| bars.iter().flat_map(|b| [b.min, b.max, b.median]))
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(0.0, f64::max);
        let (lo_dec, hi_dec) = if values.is_empty() {
            (0, 1)
        } else {
            // Half a decade of room below the smallest bar, so it is never a sliver.
            let l = (lo / 3.0).log10().floor() as i32;
            let h = hi.log10().ceil() as i32;
            (l, h.max(l + 1))
        };
        let plot_h = H - TOP - BOTTOM;
        let n = self.groups.len().max(1) as f64;
        let bars = self.series.len().max(1) as f64;
        let w = (LEFT + RIGHT + n * (bars * BAR_ROOM + GROUP_GAP)).max(MIN_W);
        let y = |v: f64| -> f64 {
            let f = (v.log10() - f64::from(lo_dec)) / f64::from(hi_dec - lo_dec);
            TOP + plot_h * (1.0 - f.clamp(0.0, 1.0))
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{H}" viewBox="0 0 {w} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{w}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
            w / 2.0,
            esc(self.title)
        );
        // Decade grid lines and labels.
        for d in lo_dec..=hi_dec {
            let v = 10f64.powi(d);
            let yy = y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                w - RIGHT,
                LEFT - 6.0,
                yy + 4.0,
                si(v)
            );
        }
        let _ = writeln!(
            s,
            r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + plot_h / 2.0,
            esc(self.y_label)
        );
        let group_w = (w - LEFT - RIGHT) / n;
        let bar_w = (group_w * 0.7 / bars).min(60.0);
        for (gi, (label, group)) in self.groups.iter().enumerate() {
            let gx = LEFT + group_w * gi as f64 + (group_w - bar_w * bars) / 2.0;
            for (bi, b) in group.iter().enumerate() {
                if !(b.median.is_finite() && b.median > 0.0) {
                    continue;
                }
                let x = gx + bar_w * bi as f64;
                let top = y(b.median);
                let colour = COLOURS[bi % COLOURS.len()];
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{}: {}</title></rect>"#,
                    bar_w - 2.0,
                    (H - BOTTOM - top).max(0.0),
                    esc(self.series.get(bi).map_or("", String::as_str)),
                    si(b.median)
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                    x + (bar_w - 2.0) / 2.0,
                    y(b.max.max(b.median)) - 3.0,
                    si(b.median)
                );
                if b.min.is_finite() && b.max.is_finite() && b.min > 0.0 {
                    let cx = x + (bar_w - 2.0) / 2.0;
                    let _ = writeln!(
                        s,
                        r#"<line x1="{cx:.1}" x2="{cx:.1}" y1="{:.1}" y2="{:.1}" stroke="black"/>"#,
                        y(b.min),
                        y(b.max)
                    );
                }
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                LEFT + group_w * (gi as f64 + 0.5),
                // Every other label a line lower: long labels of neighbours never overlap.
                H - BOTTOM + 16.0 + 14.0 * (gi % 2) as f64,
                esc(label)
            );
        }
        // Legend.
        for (i, name) in self.series.iter().enumerate() {
            let x = LEFT + 150.0 * i as f64;
            let yy = H - 22.0;
            let _ = writeln!(
                s,
                r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{yy}">{}</text>"#,
                yy - 10.0,
                COLOURS[i % COLOURS.len()],
                x + 16.0,
                esc(name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// 1500 → 1.5k, 2e6 → 2M, 0.25 → 0.25.
pub(crate) fn si(v: f64) -> String {
    let (scaled, suffix) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if scaled >= 100.0 {
        0
    } else if scaled >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{scaled:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{text}{suffix}")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_units() {
        assert_eq!(si(1500.0), "1.5k");
        assert_eq!(si(2_000_000.0), "2M");
        assert_eq!(si(3_210_000.0), "3.21M");
        assert_eq!(si(0.25), "0.25");
        assert_eq!(si(124_000.0), "124k");
        assert_eq!(si(10.0), "10");
    }

    #[test]
    fn renders_a_well_formed_chart() {
        let series = vec!["realtime".to_owned(), "a<b".to_owned()];
        let bar = |m: f64| Bar {
            median: m,
            min: m * 0.9,
            max: m * 1.1,
        };
        let chart = Chart {
            title: "deliveries/s",
            y_label: "per second",
            series: &series,
            groups: vec![
                ("fan-out".into(), vec![bar(3e6), bar(1.2e5)]),
                (
                    "channels".into(),
                    vec![
                        bar(1e6),
                        Bar {
                            median: f64::NAN,
                            min: f64::NAN,
                            max: f64::NAN,
                        },
                    ],
                ),
            ],
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<rect x=").count(), 3 + 2);
        assert!(svg.contains("a&lt;b"));
        assert!(!svg.contains("NaN"));
        // Nothing to draw still gives a valid picture.
        let empty = Chart {
            title: "t",
            y_label: "y",
            series: &series,
            groups: Vec::new(),
        }
        .render();
        assert!(empty.ends_with("</svg>\n") && !empty.contains("NaN") && !empty.contains("inf"));
    }

    /// Four servers over eight figures: the chart widens so every bar has room for its label.
    #[test]
    fn many_bars_widen_the_chart() {
        let series: Vec<String> = ["a", "b", "c", "d"].map(str::to_owned).to_vec();
        let bar = Bar {
            median: 1e5,
            min: 1e5,
            max: 1e5,
        };
        let chart = Chart {
            title: "t",
            y_label: "y",
            series: &series,
            groups: (0..8).map(|i| (format!("g{i}"), vec![bar; 4])).collect(),
        };
        let svg = chart.render();
        let width: f64 = svg
            .split("width=\"")
            .nth(1)
            .and_then(|w| w.split('"').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(width >= 8.0 * 4.0 * BAR_ROOM, "{width}");
        let first: Vec<&str> = svg.lines().filter(|l| l.contains(">g0<")).collect();
        let second: Vec<&str> = svg.lines().filter(|l| l.contains(">g1<")).collect();
        assert!(
            first[0].contains("y=\"306\"") && second[0].contains("y=\"320\""),
            "{svg}"
        );
    }
}
