//! What a template set must pass before it is accepted, beyond Handlebars' own parse: folder
//! names that are locales, bounded nesting, no partials, and strict `if`/`unless`.

use handlebars::template::TemplateElement;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonTruthy, Output, RenderContext,
    RenderError, RenderErrorReason, Renderable, Template, TemplateError,
};

use std::path::Path;

use super::{MAX_NESTING, MAX_TEMPLATE_BYTES, ReplyError};

/// Folder names that look like a language tag: "fr", "en", "pt-BR", "pt_BR". The primary
/// subtag has 2, 3 or 5 to 8 letters (BCP 47; four are reserved), so `templates/http`, the form
/// page's folder, is not taken for a language.
pub(super) fn is_locale_name(name: &str) -> bool {
    let primary = name.split(['-', '_']).next().unwrap_or(name);
    (2..=16).contains(&name.len())
        && matches!(primary.len(), 2 | 3 | 5..=8)
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The line where block or parenthesis nesting first exceeds [`MAX_NESTING`], found by a
/// lexical scan run before the (recursive) parser ever sees the source. Comments are skipped;
/// anything else it miscounts only errs towards refusing.
pub(super) fn too_deep(source: &str) -> Option<usize> {
    let mut blocks = 0usize;
    let mut rest = source;
    while let Some(start) = rest.find("{{") {
        let tag = rest[start + 2..]
            .trim_start_matches(['{', '~'])
            .trim_start();
        if tag.starts_with('!') {
            let end = if tag.starts_with("!--") { "--}}" } else { "}}" };
            let close = tag.find(end)?;
            rest = &tag[close + end.len()..];
            continue;
        }
        let close = tag.find("}}").unwrap_or(tag.len());
        let inner = &tag[..close];
        let opens_block = inner.starts_with('#')
            || (inner.starts_with('^') && !inner[1..].trim_matches(['~', ' ']).is_empty());
        if opens_block {
            blocks += 1;
        } else if inner.starts_with('/') {
            blocks = blocks.saturating_sub(1);
        }
        let mut parens = 0usize;
        let mut deepest = 0usize;
        for c in inner.chars() {
            match c {
                '(' => parens += 1,
                ')' => parens = parens.saturating_sub(1),
                _ => {}
            }
            deepest = deepest.max(parens);
        }
        if blocks > MAX_NESTING || deepest > MAX_NESTING {
            let offset = source.len() - rest.len() + start;
            return Some(source[..offset].matches('\n').count() + 1);
        }
        rest = &tag[close..];
    }
    None
}

/// Position of the first partial or decorator. Partials can include one another in a cycle,
/// which handlebars follows until the stack overflows, so one bad edit would kill the daemon
/// on reload; decorators are refused with them because their use here is defining partials.
pub(super) fn find_partial(template: &Template) -> Option<(usize, usize)> {
    for (i, element) in template.elements.iter().enumerate() {
        match element {
            TemplateElement::PartialExpression(_)
            | TemplateElement::PartialBlock(_)
            | TemplateElement::DecoratorExpression(_)
            | TemplateElement::DecoratorBlock(_) => {
                return Some(template.mapping.get(i).map_or((0, 0), |m| (m.0, m.1)));
            }
            TemplateElement::HelperBlock(block) => {
                if let Some(found) = block
                    .template
                    .iter()
                    .chain(block.inverse.iter())
                    .find_map(find_partial)
                {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

pub(super) fn describe_template_error(e: &TemplateError) -> String {
    match e.pos() {
        Some((line, column)) => format!("{} at line {line}, column {column}", e.reason()),
        None => e.reason().to_string(),
    }
}

pub(crate) fn describe_render_error(e: &RenderError) -> String {
    match (e.line_no, e.column_no) {
        (Some(line), Some(column)) => format!("{} at line {line}, column {column}", e.reason()),
        _ => e.reason().to_string(),
    }
}

/// `if`/`unless` that, in strict mode, refuse a variable the context does not have.
#[derive(Clone, Copy)]
pub(super) struct StrictIf {
    pub(super) positive: bool,
}

impl HelperDef for StrictIf {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let name = if self.positive { "if" } else { "unless" };
        let param = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex(name, 0))?;
        if r.strict_mode() && param.is_value_missing() {
            return Err(RenderError::strict_error(param.relative_path()));
        }
        let include_zero = h
            .hash_get("includeZero")
            .and_then(|v| v.value().as_bool())
            .unwrap_or(false);
        let truthy = param.value().is_truthy(include_zero) == self.positive;
        match if truthy { h.template() } else { h.inverse() } {
            Some(t) => t.render(r, ctx, rc, out),
            None => Ok(()),
        }
    }
}

/// A Handlebars registry as every admin-edited template set gets it: strict mode, and `if` /
/// `unless` that refuse an unknown variable. Escaping is the caller's choice (HTML-escaped by
/// default; mail turns it off).
pub(crate) fn strict_registry() -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    // The stock `if`/`unless` treat an unknown variable as false even in strict mode, so a
    // misspelt `{{#if has_tip}}` would silently hide a section forever.
    registry.register_helper("if", Box::new(StrictIf { positive: true }));
    registry.register_helper("unless", Box::new(StrictIf { positive: false }));
    registry
}

/// Registers an admin's template `source` (read from `path`) as `key`, refusing what would
/// hurt the daemon: more than [`MAX_TEMPLATE_BYTES`], nesting deeper than [`MAX_NESTING`],
/// partials and decorators. Also used for the form page's templates (`crate::http`).
///
/// # Errors
/// The reason, with `path` and the line where it is known.
pub(crate) fn register_checked(
    registry: &mut Handlebars<'static>,
    key: &str,
    path: &Path,
    source: String,
) -> Result<(), ReplyError> {
    let refuse = |reason: String| ReplyError::Template {
        path: path.to_path_buf(),
        reason,
    };
    if source.len() > MAX_TEMPLATE_BYTES {
        return Err(refuse(format!("larger than {MAX_TEMPLATE_BYTES} bytes")));
    }
    if let Some(line) = too_deep(&source) {
        return Err(refuse(format!(
            "blocks nested more than {MAX_NESTING} deep (or parentheses more than \
             {MAX_NESTING} deep) at line {line}"
        )));
    }
    registry
        .register_template_string(key, source)
        .map_err(|e| refuse(describe_template_error(&e)))?;
    if let Some((line, column)) = registry.get_template(key).and_then(find_partial) {
        return Err(refuse(format!(
            "partials and decorators are not supported, at line {line}, column {column}"
        )));
    }
    Ok(())
}

/// Registers `<dir>/<locale>/<name>.hbs` as `<locale>/<name>` for each of `names` in every
/// locale folder of `dir` (sorted); returns the locales. Stray folders (".git", "old",
/// backups, `http`) are not locales; a locale-looking folder must be complete, or a typo would
/// silently drop a language.
///
/// # Errors
/// No locale folder, a missing or unreadable file, a template [`register_checked`] refuses.
pub(crate) fn register_locales(
    registry: &mut Handlebars<'static>,
    dir: &Path,
    names: &[&str],
) -> Result<Vec<String>, ReplyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ReplyError::Io { path, error }
    };
    let mut locales = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if is_locale_name(&name) && entry.path().is_dir() {
            locales.push(name);
        }
    }
    locales.sort();
    if locales.is_empty() {
        return Err(ReplyError::NoLocale(dir.to_path_buf()));
    }
    for locale in &locales {
        for name in names {
            let path = dir.join(locale).join(format!("{name}.hbs"));
            let source = std::fs::read_to_string(&path).map_err(io(&path))?;
            register_checked(registry, &format!("{locale}/{name}"), &path, source)?;
        }
    }
    Ok(locales)
}
