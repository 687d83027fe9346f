//! The detector judged field by field on the labelled cases.

use super::*;

/// Per field: (right, judged). Kind over every case; the others over the
/// labelled cases' first finding.
#[derive(Debug, Default)]
pub struct Fields {
    pub kind: (u32, u32),
    pub scope: (u32, u32),
    pub rung: (u32, u32),
    pub share: (u32, u32),
    pub cause: (u32, u32),
    pub timing: (u32, u32),
    pub locus: (u32, u32),
    pub quiet: (u32, u32),
    pub wrong: Vec<String>,
}

pub fn fields(cases: &[Case]) -> Fields {
    let mut f = Fields::default();
    let tally = |field: &mut (u32, u32), ok: bool, wrong: &mut Vec<String>, what: String| {
        field.1 += 1;
        if ok {
            field.0 += 1;
        } else {
            wrong.push(what);
        }
    };
    for c in cases {
        let found = tailprobe::detect::detect(&c.series, &c.facts, &Default::default());
        let kinds: BTreeSet<String> = found.iter().map(|x| x.kind.as_str().to_string()).collect();
        let want: BTreeSet<String> = c.expected.iter().map(|k| k.to_string()).collect();
        tally(
            &mut f.kind,
            kinds == want,
            &mut f.wrong,
            format!("{}: kinds {kinds:?}", c.name),
        );
        if want.is_empty() {
            tally(
                &mut f.quiet,
                found.is_empty(),
                &mut f.wrong,
                format!("{}: not quiet", c.name),
            );
        }
        let (Some(l), Some(first)) = (&c.label, found.first()) else {
            continue;
        };
        let grouping = first.scope_key.grouping.as_str();
        tally(
            &mut f.scope,
            grouping == l.grouping,
            &mut f.wrong,
            format!("{}: scope {grouping} ({})", c.name, first.scope),
        );
        let dominant: Vec<u32> = first
            .rungs
            .iter()
            .max_by_key(|r| r.count)
            .map(|r| r.retransmits)
            .into_iter()
            .collect();
        tally(
            &mut f.rung,
            dominant == l.rungs,
            &mut f.wrong,
            format!("{}: rungs {:?}", c.name, first.rungs),
        );
        tally(
            &mut f.share,
            (first.share - l.share).abs() <= SHARE_TOLERANCE,
            &mut f.wrong,
            format!("{}: share {}", c.name, first.share),
        );
        if !l.rungs.is_empty() {
            let agrees = first
                .evidence
                .iter()
                .any(|e| e.starts_with("TCP_INFO agrees"));
            tally(
                &mut f.timing,
                agrees == l.timing_agrees,
                &mut f.wrong,
                format!("{}: TCP_INFO agreement {agrees}", c.name),
            );
        }
        if let Some(cause) = l.cause {
            let top = first.likely_causes.first().map(|c| c.id.as_str());
            tally(
                &mut f.cause,
                top == Some(cause),
                &mut f.wrong,
                format!(
                    "{}: first cause {top:?} of {:?}",
                    c.name,
                    first
                        .likely_causes
                        .iter()
                        .map(|c| format!("{} {:.2}", c.id, c.score))
                        .collect::<Vec<_>>()
                ),
            );
        }
        if let Some(locus) = l.locus {
            tally(
                &mut f.locus,
                first.locus.as_str() == locus,
                &mut f.wrong,
                format!("{}: locus {}", c.name, first.locus),
            );
        }
    }
    f
}
