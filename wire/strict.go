package wire

import (
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// strict are the options of Unmarshal, spelled out so that they do not
// depend on the library's defaults.
var strict = jsonv2.JoinOptions(
	// A name given twice in an object, at any depth, is an error: the
	// same bytes must not mean one thing here and another to a proxy
	// that keeps the first one.
	jsontext.AllowDuplicateNames(false),
	// A name matches a struct field's exactly: "Type" is not "type".
	jsonv2.MatchCaseInsensitiveNames(false),
	// Unknown names are ignored, as they always were.
	jsonv2.RejectUnknownMembers(false),
	// Invalid UTF-8 in a string and a lone surrogate escape become
	// U+FFFD, as they always did (a socket frame is checked for UTF-8
	// before this).
	jsontext.AllowInvalidUTF8(true),
)

// ErrDuplicateName is wrapped by the error of Unmarshal when an object has
// a name twice.
var ErrDuplicateName = jsontext.ErrDuplicateName

// Unmarshal decodes JSON from a client into v: a socket frame, an HTTP
// request body, or a part of either. Every frame and body is decoded with
// it, and so is every object or list taken out of one (strings and
// numbers, which hold no names, may be read with encoding/json). Unlike
// encoding/json, it matches object names to struct fields exactly
// (case-sensitively) and refuses a name given twice in any object,
// including objects nested in a value that is kept raw (json.RawMessage)
// or skipped as unknown. Unknown names are ignored.
func Unmarshal(data []byte, v any) error {
	return jsonv2.Unmarshal(data, v, strict)
}
