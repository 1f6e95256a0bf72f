//! The HTML of a report: one self-contained file (styles, script and images inline, nothing
//! fetched), built from sections.

use base64::Engine;
use std::fmt::Write;

/// `s` with `&`, `<`, `>`, `"` and `'` escaped for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An `<img>` of PNG bytes as a data URI.
pub fn png(bytes: &[u8], alt: &str) -> String {
    format!(
        r#"<img src="data:image/png;base64,{}" alt="{}">"#,
        base64::engine::general_purpose::STANDARD.encode(bytes),
        escape(alt)
    )
}

/// A `<figure>` of `content` with its caption (HTML).
pub fn figure(class: &str, content: &str, caption: &str) -> String {
    format!(r#"<figure class="{class}">{content}<figcaption>{caption}</figcaption></figure>"#)
}

/// A table: the header cells and the rows (HTML), with a caption; `classes` gives a CSS class
/// per column ("num" for numbers, "wide" for long text, "" for none; missing: none).
pub fn table(caption: &str, header: &[String], rows: &[Vec<String>], classes: &[&str]) -> String {
    let class = |i: usize| match classes.get(i) {
        Some(c) if !c.is_empty() => format!(r#" class="{c}""#),
        _ => String::new(),
    };
    let mut s = String::from(r#"<div class="scroll"><table>"#);
    write!(s, "<caption>{caption}</caption><thead><tr>").unwrap();
    for (i, h) in header.iter().enumerate() {
        write!(s, "<th{}>{h}</th>", class(i)).unwrap();
    }
    s.push_str("</tr></thead><tbody>");
    for r in rows {
        s.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            write!(s, "<td{}>{c}</td>", class(i)).unwrap();
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
    s
}

/// One part of a page, listed in its contents.
pub struct Section {
    /// The element id (unique in the page).
    pub id: String,
    /// The heading.
    pub heading: String,
    /// The body (HTML).
    pub body: String,
}

/// A whole page.
pub struct Page {
    /// The title and first heading.
    pub title: String,
    /// One line under the title (HTML).
    pub subtitle: String,
    /// The sections, in order.
    pub sections: Vec<Section>,
}

impl Page {
    /// The page as one HTML document.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(1 << 16);
        write!(
            s,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"generator\" content=\"ouro {}\"><title>{}</title><style>{STYLE}</style></head><body>",
            env!("CARGO_PKG_VERSION"),
            escape(&self.title)
        )
        .unwrap();
        write!(
            s,
            r#"<header><h1>{}</h1><p class="sub">{}</p><nav>"#,
            escape(&self.title),
            self.subtitle
        )
        .unwrap();
        for sec in &self.sections {
            write!(
                s,
                r##"<a href="#{}">{}</a>"##,
                escape(&sec.id),
                escape(&sec.heading)
            )
            .unwrap();
        }
        s.push_str("</nav></header><main>");
        for sec in &self.sections {
            write!(
                s,
                r#"<section id="{}"><h2>{}</h2>{}</section>"#,
                escape(&sec.id),
                escape(&sec.heading),
                sec.body
            )
            .unwrap();
        }
        writeln!(s, "</main><script>{SCRIPT}</script></body></html>").unwrap();
        s
    }
}

/// The switches that show or hide the series of each group (a cell, a run): a checkbox per
/// group with its colour, and buttons for all and none.
pub fn group_switches(groups: &[(usize, String)]) -> String {
    let mut s = String::from(
        r#"<div class="switches"><button type="button" data-all="1">show all</button><button type="button" data-all="0">hide all</button>"#,
    );
    for (g, label) in groups {
        write!(
            s,
            r#"<label><input type="checkbox" checked data-switch="{g}"><span class="swatch" style="background:{}"></span>{}</label>"#,
            super::svg::color(*g),
            escape(label)
        )
        .unwrap();
    }
    s.push_str("</div>");
    s
}

const STYLE: &str = r#"
:root{--fg:#1d232a;--muted:#5b6570;--line:#d8dde3;--bg:#fff;--accent:#1f77b4}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
header{padding:1.2rem 1.5rem .6rem;border-bottom:1px solid var(--line);background:#f7f9fb}
h1{font-size:1.45rem;margin:0 0 .2rem;word-break:break-word}
h2{font-size:1.15rem;margin:1.6rem 0 .6rem;padding-bottom:.2rem;border-bottom:1px solid var(--line)}
h3{font-size:1rem;margin:1.2rem 0 .4rem}
.sub{margin:0;color:var(--muted)}
nav{display:flex;flex-wrap:wrap;gap:.3rem .9rem;margin-top:.6rem;font-size:.9rem}
nav a{color:var(--accent);text-decoration:none}
main{padding:0 1.5rem 2rem;max-width:1400px}
p{max-width:60rem}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,420px),1fr));gap:1rem}
.thumbs{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(46%,200px),1fr));gap:.8rem}
.images{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,300px),1fr));gap:1rem}
figure{margin:0;padding:.5rem;border:1px solid var(--line);border-radius:6px;background:#fff}
figcaption{font-size:.85rem;color:var(--muted);margin-top:.3rem}
figcaption b{color:var(--fg)}
img{display:block;width:100%;height:auto;image-rendering:pixelated}
.thumbs img{image-rendering:auto}
svg.chart{display:block;width:100%;height:auto;font-family:inherit}
svg .title{font-size:16px;font-weight:600;fill:var(--fg)}
svg .tick{font-size:13px;fill:var(--muted)}
svg .axis{font-size:13px;fill:var(--muted)}
svg .grid{stroke:#eceff2;stroke-width:1}
svg .frame{fill:none;stroke:#b9c0c8;stroke-width:1}
svg circle{cursor:default}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.88rem;margin:.4rem 0 1rem}
caption{text-align:left;color:var(--muted);font-size:.85rem;padding:.2rem 0 .4rem;caption-side:top}
th,td{border-bottom:1px solid var(--line);padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f5f7;font-weight:600;white-space:nowrap}
td.wide{min-width:16rem}
.nw{white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
pre{background:#f5f7f9;border:1px solid var(--line);border-radius:6px;padding:.7rem;overflow-x:auto;font-size:.82rem}
details{margin:.5rem 0}
summary{cursor:pointer;color:var(--accent)}
.verdict{display:inline-block;padding:.05rem .5rem;border-radius:1rem;font-weight:600;white-space:nowrap}
.holds{background:#dff3e3;color:#1b6b2e}
.fails{background:#fbe2e0;color:#9b1c13}
.switches{display:flex;flex-wrap:wrap;gap:.3rem .8rem;align-items:center;margin:.4rem 0 .8rem;font-size:.88rem}
.switches label{display:inline-flex;align-items:center;gap:.3rem;cursor:pointer}
.switches button{font:inherit;padding:.1rem .6rem;border:1px solid var(--line);border-radius:4px;background:#f7f9fb;cursor:pointer}
.swatch{display:inline-block;width:.9rem;height:.9rem;border-radius:2px}
.note{color:var(--muted);font-size:.88rem}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.4rem 0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;word-break:break-word}
@media (max-width:600px){header{padding:1rem .8rem .5rem}main{padding:0 .8rem 1.5rem}dl.facts{grid-template-columns:1fr}dl.facts dd{margin-bottom:.4rem}}
"#;

/// Show or hide every element of a group when its switch changes.
const SCRIPT: &str = r#"
(function(){
  function show(g, on){
    document.querySelectorAll('[data-group="'+g+'"]').forEach(function(e){e.style.display = on ? '' : 'none';});
    document.querySelectorAll('input[data-switch="'+g+'"]').forEach(function(e){e.checked = on;});
  }
  document.querySelectorAll('input[data-switch]').forEach(function(box){
    box.addEventListener('change', function(){ show(box.getAttribute('data-switch'), box.checked); });
  });
  document.querySelectorAll('button[data-all]').forEach(function(b){
    b.addEventListener('click', function(){
      var on = b.getAttribute('data-all') === '1';
      b.parentNode.querySelectorAll('input[data-switch]').forEach(function(box){ show(box.getAttribute('data-switch'), on); });
    });
  });
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_page_fetches_nothing() {
        let page = Page {
            title: "t <1>".into(),
            subtitle: "s".into(),
            sections: vec![Section {
                id: "a".into(),
                heading: "A".into(),
                body: png(&[137, 80, 78, 71], "x"),
            }],
        };
        let html = page.render();
        assert!(html.contains("<title>t &lt;1&gt;</title>"));
        assert!(html.contains("data:image/png;base64,iVBORw=="));
        for remote in ["http://", "https://", "<link", "src=\"/", "@import", "url("] {
            assert!(!html.contains(remote), "{remote}");
        }
    }
}
