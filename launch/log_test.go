package launch

import "testing"

func TestMaskSecret(t *testing.T) {
	for in, want := range map[string]string{
		"HF_TOKEN=hf_abc":                 "HF_TOKEN=(hidden)",
		"GITHUB_TOKEN=":                   "GITHUB_TOKEN=(hidden)",
		"DB_PASSWORD=a=b":                 "DB_PASSWORD=(hidden)",
		"MYSQL_PASSWD=x":                  "MYSQL_PASSWD=(hidden)",
		"client_secret=x":                 "client_secret=(hidden)",
		"AWS_REGION=eu-west-1":            "AWS_REGION=(hidden)",
		"AWS_SECRET_ACCESS_KEY=x":         "AWS_SECRET_ACCESS_KEY=(hidden)",
		"OPENAI_APIKEY=x":                 "OPENAI_APIKEY=(hidden)",
		"API_KEY=x":                       "API_KEY=(hidden)",
		"GOOGLE_APPLICATION_CREDENTIALS=": "GOOGLE_APPLICATION_CREDENTIALS=(hidden)",
		"PATH=/bin":                       "PATH=/bin",
		"HOME=/home/u":                    "HOME=/home/u",
		"KEYBOARD=us":                     "KEYBOARD=us",
		"SLURM_JOB_ID=3":                  "SLURM_JOB_ID=3",
		"NOEQUALS":                        "NOEQUALS",
	} {
		if got := maskSecret(in); got != want {
			t.Errorf("maskSecret(%q) = %q, want %q", in, got, want)
		}
	}
}
