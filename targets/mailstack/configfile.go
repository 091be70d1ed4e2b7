package mailstack

import (
	"github.com/goccy/go-yaml"

	"github.com/mailchaos/mailchaos/internal/suggest"
	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

// ConfigError is an invalid configuration file or value: it names the file,
// the position and the field, so the user can go straight to the mistake.
type ConfigError = yamlfile.Error

// ConfigErrors is every problem found in one configuration, in file order.
type ConfigErrors = yamlfile.Errors

// FieldError is one invalid value in a configuration. Field is the dotted
// path of the field as written in a file (scan.workers, engines[1].dial).
type FieldError = yamlfile.FieldError

// LoadConfig reads a YAML configuration file. The file starts from the
// profile it names (field profile), or from profile when that is not empty
// (a command-line choice wins), or from the remediated profile; every field
// the file sets overrides the profile. Unknown fields, wrong types and
// invalid values are reported as [ConfigErrors] naming the file, line,
// column and field.
func LoadConfig(path, profile string) (Config, error) {
	data, err := yamlfile.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(path, data, profile)
}

// ParseConfig is [LoadConfig] on bytes already read; name is used in errors.
func ParseConfig(name string, data []byte, profile string) (Config, error) {
	doc, err := yamlfile.Parse(name, data)
	if err != nil {
		return Config{}, err
	}
	if profile == "" {
		var head struct {
			Profile string `yaml:"profile"`
		}
		if err := yaml.Unmarshal(data, &head); err == nil {
			profile = head.Profile
		}
	}
	if profile == "" {
		profile = ProfileRemediated
	}
	cfg, err := ProfileConfig(profile)
	if err != nil {
		return Config{}, ConfigErrors{doc.At("profile", err.Error())}
	}
	if err := doc.Decode(&cfg); err != nil {
		return Config{}, err
	}
	cfg.Profile = profile
	cfg.FillDefaults()
	if err := doc.Positioned(cfg.Validate()); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// suggestion returns `; did you mean "x"?` for the valid name closest to
// got, or "".
func suggestion(got string, valid []string) string { return suggest.Hint(got, valid) }
