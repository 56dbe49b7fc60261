//! The rules files taken together: checks across files (ids, orders, the fallback, hints) and
//! the classifier they make.

use super::*;

/// Problems that involve several files.
pub(super) fn cross_check(
    dir: &Path,
    specs: &[Spec],
    unreadable: bool,
    problems: &mut Vec<RuleProblem>,
) {
    let short = |file: &Path| {
        file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };

    let mut ids: HashMap<&str, (&Path, usize)> = HashMap::new();
    for spec in specs {
        let Some(id) = &spec.id else { continue };
        match ids.get(id.value.as_str()) {
            Some(&(file, line)) => problems.push(problem(
                &spec.file,
                id.line,
                format!(
                    "duplicate id `{}`: {}:{line} has it too",
                    id.value,
                    short(file)
                ),
            )),
            None => {
                ids.insert(&id.value, (&spec.file, id.line));
            }
        }
    }

    let fallbacks: Vec<(&Path, usize)> = specs
        .iter()
        .filter_map(|s| s.fallback.map(|line| (s.file.as_path(), line)))
        .collect();
    match fallbacks.as_slice() {
        // A file that could not be read may well be the one holding the fallback.
        [] if !unreadable && !specs.is_empty() => problems.push(problem(
            dir,
            0,
            "no category has `fallback = true`; exactly one must, to take the messages no rule matches",
        )),
        [(first_file, first_line), rest @ ..] => {
            for (file, line) in rest {
                problems.push(problem(
                    file,
                    *line,
                    format!(
                        "a second fallback category: {}:{first_line} already has `fallback = true`, and exactly one may",
                        short(first_file)
                    ),
                ));
            }
        }
        [] => {}
    }

    let mut orders: HashMap<i64, (&Path, usize)> = HashMap::new();
    for spec in specs {
        let Some(order) = &spec.order else { continue };
        match orders.get(&order.value) {
            Some(&(file, line)) => problems.push(problem(
                &spec.file,
                order.line,
                format!(
                    "order {} is also used by {}:{line}; orders break ties, so each must be unique",
                    order.value,
                    short(file)
                ),
            )),
            None => {
                orders.insert(order.value, (&spec.file, order.line));
            }
        }
    }

    // Hint names: two categories answering to the same plus-address tag or subject tag
    // would make the hint ambiguous.
    let mut names: HashMap<String, (&str, &Path, usize)> = HashMap::new();
    for spec in specs {
        let Some(id) = &spec.id else { continue };
        let mut candidates: Vec<(&str, usize)> = vec![(&id.value, id.line)];
        if let Some(label) = &spec.label {
            candidates.extend(label.value.values().map(|l| (l.as_str(), label.line)));
        }
        candidates.extend(spec.aliases.iter().map(|a| (a.value.as_str(), a.line)));
        for (name, line) in candidates {
            let key = hint_key(name);
            if key.is_empty() {
                problems.push(problem(
                    &spec.file,
                    line,
                    format!("{name:?} cannot serve as a name: it has no letter or digit"),
                ));
                continue;
            }
            match names.get(&key) {
                Some(&(other, file, other_line)) if other != id.value => {
                    problems.push(problem(
                        &spec.file,
                        line,
                        format!(
                            "{name:?} also names category `{other}` ({}:{other_line}), so a hint using it would be ambiguous",
                            short(file)
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    names.insert(key, (&id.value, &spec.file, line));
                }
            }
        }
    }
}

/// Builds the classifier from specs that passed every check.
pub(super) fn assemble(mut specs: Vec<Spec>) -> Result<Classifier, String> {
    specs.sort_by_key(|s| s.order.as_ref().map(|o| o.value));
    let mut categories = Vec::with_capacity(specs.len());
    let mut rules = Vec::new();
    let mut tips = Vec::with_capacity(specs.len());
    let mut fields: Vec<FieldScan> = Vec::new();
    let mut field_index: HashMap<Field, usize> = HashMap::new();
    let mut hints = HashMap::new();
    let mut fallback = None;
    let mut index_of = |field: Field, fields: &mut Vec<FieldScan>| {
        *field_index.entry(field.clone()).or_insert_with(|| {
            fields.push(FieldScan {
                field,
                rules: Vec::new(),
                set: None,
            });
            fields.len() - 1
        })
    };

    for (c, spec) in specs.into_iter().enumerate() {
        let (Some(id), Some(label), Some(order)) = (spec.id, spec.label, spec.order) else {
            return Err(format!("{} is incomplete", spec.file.display()));
        };
        if spec.fallback.is_some() {
            fallback = Some(c);
        }
        for name in std::iter::once(&id.value)
            .chain(label.value.values())
            .chain(spec.aliases.iter().map(|a| &a.value))
        {
            hints.insert(hint_key(name), c);
        }
        for rule in spec.rules {
            let r = rules.len();
            let mut at = Vec::with_capacity(rule.fields.len());
            for field in rule.fields {
                let f = index_of(field, &mut fields);
                fields[f].rules.push(r);
                at.push(f);
            }
            rules.push(Rule {
                category: c,
                name: rule.name,
                regex: rule.regex,
                weight: rule.weight,
                fields: at,
            });
        }
        tips.push(
            spec.tips
                .into_iter()
                .map(|tip| Tip {
                    name: tip.name,
                    regex: tip.regex,
                    fields: tip
                        .fields
                        .into_iter()
                        .map(|f| index_of(f, &mut fields))
                        .collect(),
                    text: tip.text,
                })
                .collect(),
        );
        categories.push(Category {
            id: id.value,
            label: label.value,
            order: order.value,
            response: spec.response,
            fallback: spec.fallback.is_some(),
            aliases: spec.aliases.into_iter().map(|a| a.value).collect(),
        });
    }
    let fallback = fallback.ok_or("no fallback category")?;

    for scan in &mut fields {
        if scan.rules.len() < 2 {
            continue;
        }
        let patterns = scan.rules.iter().map(|&r| rules[r].regex.as_str());
        match RegexSetBuilder::new(patterns)
            .size_limit(SET_SIZE_LIMIT)
            .dfa_size_limit(SET_DFA_LIMIT)
            .build()
        {
            Ok(set) => scan.set = Some(set),
            Err(e) => tracing::warn!(
                field = scan.field.name(),
                error = %e,
                "rules for this field are too big to scan together; running them one by one"
            ),
        }
    }

    Ok(Classifier {
        categories,
        fallback,
        rules,
        fields,
        tips,
        hints,
    })
}
