package htmlreport

// pageTemplate is the page around the report: the live view adds its
// script at the end. Nothing in it is fetched.
const pageTemplate = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{.CSP}}">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>{{.CSS}}</style>
</head>
<body>
{{if .Live}}<p id="live" class="live" data-state="connecting">live: connecting</p>
{{end}}<main id="report">{{.Body}}</main>
{{if .Live}}<script>{{.Script}}</script>
{{end}}</body>
</html>
`

// bodyTemplate renders the runs inside <main>. The status, reason, tables
// and sentences are the run's summary's; the charts are drawn from its
// journal.
const bodyTemplate = `{{range .Runs}}<section class="run" data-run="{{.ID}}" data-status="{{.Status}}">
<header>
<h1>{{if .Title}}{{.Title}}{{else}}run {{.ID}}{{end}}</h1>
<p class="meta">{{if .File}}file <code>{{.File}}</code>, {{end}}run <code>{{.ID}}</code>, started {{stamp .Start}}</p>
<p class="status"><span class="badge {{.Class}}">{{.Status}}</span>{{with .Leftover}} <span class="badge st-bad leftover">{{.}}</span>{{end}} <span class="line">{{.Line}}</span></p>
{{if .Reason}}<p class="message reason">{{.Reason}}</p>
{{end}}{{range .Aborts}}<p class="message bad abort">{{.}}</p>
{{end}}{{if .Error}}<p class="message bad error">error: {{.Error}}</p>
{{end}}</header>
{{if .Outstanding}}<div class="leftovers"><p><strong>{{if .Leftover}}{{.Leftover}}{{else}}ROLLBACK FAILED{{end}}</strong>: these faults may still be in place until they expire:</p>
<ul>{{range .Outstanding}}<li>step {{.Step}} {{.Fault}}{{if .Handle}}, handle <code>{{.Handle}}</code>{{end}}: {{if .RemoveError}}removal failed: {{.RemoveError}}{{else}}never removed{{end}}{{if .Toxics}} ({{.Toxics}}){{end}}</li>
{{end}}</ul>
<p>run <code>mailchaos recover</code> on this journal to remove them</p></div>
{{end}}{{if .Table}}<h2>Verdict</h2>
<table class="verdict">
<thead><tr><th>SLI</th><th>tolerance</th><th>baseline</th><th>worst during faults</th><th>time to recover</th><th>bound</th><th>verdict</th></tr></thead>
<tbody>
{{range .Table}}<tr class="{{rowClass .}}"><td>{{.SLI}}</td><td>{{.Tolerance}}</td><td>{{.Baseline}}</td><td>{{.Worst}}</td><td>{{.TimeToRecover}}</td><td>{{.Bound}}</td><td>{{.Verdict}}</td></tr>
{{end}}</tbody>
</table>
{{if .From}}<p class="note">time to recover counted from the planned end of {{.From}}</p>
{{end}}{{else if .Samples}}<h2>Samples</h2>
<table class="samples">
<thead><tr><th>SLI</th><th>samples</th><th>failed probes</th></tr></thead>
<tbody>
{{range .Samples}}<tr><td>{{.Name}}</td><td>{{.Samples}}</td><td>{{.FailedSamples}}</td></tr>
{{end}}</tbody>
</table>
{{end}}{{if .FailedSamples}}<h2>Failed samples</h2>
<ul class="failed-samples">{{range .FailedSamples}}<li>{{.}}</li>{{end}}</ul>
{{end}}{{if .Failed}}<h2>Failed assertions</h2>
<ul class="asserts">{{range .Failed}}<li class="bad">{{.Sentence}}</li>{{end}}</ul>
{{end}}{{if .Invariants}}<h2>Invariants</h2>
<table class="invariants">
<tbody>
{{range .Invariants}}{{$r := result .}}<tr class="{{if eq $r "pass"}}ok{{else if eq $r "FAIL"}}bad{{else}}skip{{end}}"><td>{{$r}}</td><td>{{.Sentence}}</td></tr>
{{end}}</tbody>
</table>
{{end}}<h2>SLIs over time</h2>
<p class="legend"><span class="k fault"></span>fault in place <span class="k planned"></span>fault planned <span class="k band"></span>within tolerance <span class="k baseline"></span>baseline <span class="k rstart"></span>recovery clock starts <span class="k rbound"></span>recovery bound <span class="k ttr"></span>recovered <span class="k fail"></span>failed sample</p>
{{if .Recovery}}<p class="note">{{.Recovery}}</p>{{end}}
{{range .Charts}}<figure class="sli" data-sli="{{.Name}}"><figcaption><strong>{{.Name}}</strong> <span class="cap">{{.Caption}}</span></figcaption>{{.SVG}}</figure>
{{end}}{{if or .LoadSteps .Load}}<h2>Load</h2>
{{if .LoadSteps}}<p class="note">What each load did, window by window: rates, latency and failure shares of the window ending at each point.</p>
{{end}}{{range .LoadSteps}}<section class="load-step" data-step="{{.Step}}"><h3>{{.Label}}</h3>
{{range .Charts}}<figure class="load" data-chart="{{.Key}}"><figcaption><strong>{{.Name}}</strong> <span class="cap">{{.Caption}}</span></figcaption>{{.SVG}}</figure>
{{end}}{{if .Dropped}}<p class="note">{{.Dropped}} windows past the first are not drawn.</p>
{{end}}</section>
{{end}}{{range .Load}}<figure class="load" data-chart="{{.Key}}"><figcaption><strong>{{.Name}}</strong> <span class="cap">{{.Caption}}</span></figcaption>{{.SVG}}</figure>
{{end}}{{end}}{{if .Dropped}}<p class="note">{{.Dropped}} samples past the first of each SLI are not drawn.</p>
{{end}}{{if .Steps}}<h2>Faults</h2>
{{.Gantt}}
<table class="faults">
<thead><tr><th>step</th><th>fault</th><th>links</th><th>planned onset</th><th>actual onset</th><th>delay</th><th>planned end</th><th>removed</th><th>note</th></tr></thead>
<tbody>
{{range .Steps}}<tr class="{{if .Err}}bad{{end}}"><td>{{.Index}}{{if .Name}} ({{.Name}}){{end}}</td><td>{{.Fault}}</td><td>{{.Link}}</td><td>{{.PlannedAt}}</td><td>{{.ActualAt}}</td><td>{{.Delay}}</td><td>{{.PlannedEnd}}</td><td>{{.RemovedAt}}</td><td>{{if .Err}}<span class="bad">{{.Err}}</span> {{end}}{{.Detail}}</td></tr>
{{end}}</tbody>
</table>
{{end}}</section>
{{else}}<p class="note">The journal holds no run yet.</p>
{{end}}`

// pageCSS styles the page; the CSP allows it by its hash.
const pageCSS = `
:root{--fg:#1d2330;--muted:#5d6675;--ok:#1a7f37;--bad:#c62828;--fault:#f4a26133;--plan:#b35c00;--band:#2e7d3214;--line:#d0d5dd;--warn:#b26a00}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:#fafbfc}
main{max-width:980px;margin:0 auto;padding:16px 20px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:15px;margin:16px 0 4px}
code{font:12px ui-monospace,monospace;background:#eef0f3;padding:1px 4px;border-radius:3px}
.meta,.note,.cap,.why{color:var(--muted)}.note{font-size:13px}
.status{margin:6px 0}.status .line{color:var(--muted)}
.badge{display:inline-block;font-weight:600;padding:3px 10px;border-radius:4px;color:#fff;background:#57606a}
.badge.st-pass{background:var(--ok)}.badge.st-bad{background:var(--bad)}.badge.st-warn{background:var(--warn)}
.leftovers{border:2px solid var(--bad);border-radius:4px;padding:4px 12px;margin:12px 0;color:var(--bad);background:#fff}
.message{margin:4px 0}.bad{color:var(--bad)}.ok{color:var(--ok)}
.live{position:sticky;top:0;margin:0;padding:4px 20px;background:#1d2330;color:#fff;font-size:13px;z-index:1}
table{border-collapse:collapse;width:100%;font-size:13px;background:#fff}
th,td{border:1px solid var(--line);padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
tr.bad td{color:var(--bad)}tr.overall td{font-weight:600}tr.skip td{color:var(--muted)}
td.bad,span.bad{color:var(--bad)}
figure{margin:12px 0;background:#fff;border:1px solid var(--line);border-radius:4px;padding:6px}
figcaption{font-size:13px;margin:0 0 2px 4px}
svg{display:block;width:100%;height:auto}
.legend{font-size:12px;color:var(--muted)}
.k{display:inline-block;width:14px;height:10px;margin:0 4px 0 10px;vertical-align:middle;border:1px solid transparent}
.k.fault{background:#f4a26166}.k.planned{border:1px dashed var(--plan)}.k.band{background:#2e7d3233}
.k.baseline{border-top:2px dashed #6a3d9a;height:0}.k.rstart{border-left:2px solid #444;width:0}
.k.rbound{border-left:2px dashed var(--bad);width:0}.k.ttr{border-left:2px solid var(--ok);width:0}
.k.fail{background:var(--bad);width:8px;height:8px}
.chart .fault{fill:var(--fault)}.chart .planned,.gplan{fill:none;stroke:var(--plan);stroke-dasharray:4 3;stroke-width:1}
.band{fill:var(--band)}.tol{stroke:var(--ok);stroke-width:1}
.baseline{stroke:#6a3d9a;stroke-dasharray:6 4;stroke-width:1.2}
.rstart{stroke:#444;stroke-width:1.2}.rbound{stroke:var(--bad);stroke-dasharray:5 3;stroke-width:1.2}
.ttr{stroke:var(--ok);stroke-width:2}
.axis{stroke:#888}.tick{stroke:#888}.grid{stroke:#eceef1}.phase{stroke:#bbb;stroke-dasharray:2 3}
.tl{font-size:11px;fill:var(--muted)}.lbl{font-size:11px;fill:var(--fg)}.lbl.ok{fill:var(--ok)}.lbl.bad{fill:var(--bad)}
.line{fill:none;stroke-width:1.6}.pt{stroke:none}
.line.s0{stroke:#1f6feb}.pt.s0{fill:#1f6feb}.line.s1{stroke:#d9480f}.pt.s1{fill:#d9480f}
.line.s2{stroke:#2b8a3e}.pt.s2{fill:#2b8a3e}.line.s3{stroke:#862e9c}.pt.s3{fill:#862e9c}
.line.s4{stroke:#5c940d}.pt.s4{fill:#5c940d}.line.s5{stroke:#495057}.pt.s5{fill:#495057}
.line.dash{stroke-dasharray:6 4}.gap{fill:var(--bad);stroke:none}
.fail{stroke:var(--bad);stroke-width:2;fill:none}
.gact{fill:#f08c00}.gact.bad{fill:var(--bad)}
`
