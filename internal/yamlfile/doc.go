// Package yamlfile decodes YAML files strictly into Go structs and reports
// every mistake in a file at once, each with the file, line, column and
// dotted field path, and the nearest valid name for a misspelt field. It
// also writes a JSON Schema of the same files ([Schema]) for editors.
//
// goccy/go-yaml parses; the decoding is this package's own walk over the
// syntax tree, so that it can go on after a mistake. The document is read
// as follows by [Doc.Decode].
//
// # Structs
//
// A mapping sets the fields named by their yaml tags (`yaml:"name"`);
// fields without a yaml tag, unexported fields and fields tagged "-" are
// not set from files. The fields of a struct field tagged
// `yaml:",inline"` count as the outer struct's own (an outer field wins
// over an inline one of the same name; an unexported embedded pointer
// cannot be inline, as it cannot be allocated). A key that names no
// field is an error that lists the valid fields and suggests the nearest
// one; a key written twice in one mapping is an error. Fields the document
// does not name keep the values they had, so a struct holding defaults
// (a profile) is overridden field by field.
//
// # Lists and maps
//
// A list is required for a slice (a single value is not taken as a list of
// one) and replaces the slice wholesale: a default list is never merged
// with the document's. An array takes a list of exactly its length. A
// mapping replaces a map field wholesale too. Map keys are read as the
// key type: any scalar as a string key, numbers for integer keys, and so
// on.
//
// # Scalars
//
//   - string: any scalar, as written ("0x1F", "1.50", "true"); a mapping or
//     a list is an error.
//   - bool: true or false (also True, TRUE); "yes" is a string, not a bool.
//   - int and uint of any size: a whole number in range (an integral float
//     such as 1e6 or 2.0 counts); a fraction, a quoted number or a number
//     out of range is an error.
//   - float32, float64: any number, .inf, .nan.
//   - time.Duration: a Go duration string such as 500ms or 1m30s; a bare
//     number is an error, as its unit would be a guess.
//   - any: plain Go values: map[string]any, []any, string, int (uint64
//     beyond int's range), float64, bool, nil.
//   - types implementing [Unmarshaler] decode themselves from the node;
//     types implementing [encoding.TextUnmarshaler] from a scalar's text.
//     A struct type with yaml-tagged fields implementing
//     encoding.TextUnmarshaler may be written either way: a scalar is its
//     short form, given to UnmarshalText; a mapping sets its fields as for
//     any struct (so that a list may mix short and long items, such as
//     users given as an address, or as address, login and password).
//
// A null (~, null, or nothing after the colon) leaves the value unchanged.
// Pointers are allocated (a pointer that was set points to a fresh copy
// afterwards, so a default shared with others is not changed).
//
// # Anchors, aliases, tags, merge keys
//
// An alias stands for the value of the anchor defined last before it; an
// alias naming no such anchor is an error. A document expanding to more
// than 10,000 values plus 100 per node written, or to more than 50,000
// values in all (an alias bomb), is stopped with an error. Tags are ignored except !!str (the value is a string,
// never a number or a bool) and !!null. Merge keys (<<: *base, or a list of
// aliases) bring in the keys the mapping does not set itself.
//
// # Documents and errors
//
// Only the first document of a file is decoded; a second one with content
// is an error. Errors are [Errors] sorted by line and column, each
// positioned at the offending key (unknown or duplicate key) or value
// (wrong type, range, duration). A wrong scalar reached through an alias
// is reported at the alias; a mistake inside an aliased mapping or list is
// reported where the anchor's text has it, once for each field path it is
// used at. [Doc.At] and [Doc.Positioned] position the errors
// of a validator that knows only field paths; [Join] merges decoding and
// validation errors into one list.
//
// # Limits
//
// [ReadFile] refuses a file longer than 1 MiB (or the size set by the
// environment variable MAILCHAOS_MAX_FILE_SIZE), reading no more than one
// byte past it. [Parse] refuses, with the line and column, a NUL byte,
// invalid UTF-8, mappings and lists nested more than [MaxNesting] deep, a
// block mapping of more than [MaxMappingKeys] keys and more than
// [MaxValues] values in all. These are checked by a scan of the bytes
// before the YAML parser runs, as its memory grows much faster than the
// file. Such errors wrap [ErrLimit] (but for the text checks).
//
// # JSON Schema tags
//
// [Schema] takes property names from the yaml tags as decoding does, a
// description from the doc tag, and constraints from the jsonschema tag,
// whose comma-separated options are:
//
//	required          the property must be present
//	enum=a|b|c        one of these values (typed as the field: strings,
//	                  integers, numbers or booleans)
//	minimum=N         a number at least N
//	maximum=N         a number at most N
//	pattern=RE        a string matching RE; it takes the rest of the tag,
//	                  commas included, so it comes last
//
// For example:
//
//	Mode    string        `yaml:"mode" jsonschema:"required,enum=fast|slow" doc:"How hard to push."`
//	Workers int           `yaml:"workers" jsonschema:"minimum=1,maximum=64"`
//	Users   []string      `yaml:"users" jsonschema:"pattern=^[^@]+@[^@]+$"`
//
// On a list or a map, enum, minimum, maximum and pattern constrain its
// items or values. An unknown option or a constraint that does not fit the
// field's type makes Schema fail. The decoder does not enforce these tags:
// validators do.
package yamlfile
