"""The layer explorer in the HTML report: the model as inline JSON and a small inline script (no
network, no library) that draws the same view as the terminal explorer (builder/analyze/tui.py):
the layer list, the file tree as of the selected layer with A/M/D/W marks and summed directory
sizes, directories that open and close, the changes filters, search and a details line."""

from __future__ import annotations

import json

from builder.analyze.explore import Explorer, to_json

CSS = """
#explorer{display:grid;grid-template-columns:minmax(260px,34%) 1fr;gap:12px;align-items:start}
#x-layers{border-collapse:collapse;width:100%}#x-layers tr{cursor:pointer}
#x-layers tr.sel{background:#dde7f7}#x-layers td{padding:2px 6px;white-space:nowrap}
#x-layers td.cmd{white-space:normal;font-family:ui-monospace,monospace;font-size:12px}
#x-controls{display:flex;gap:8px;margin-bottom:6px}#x-search{flex:1;padding:3px}
#x-tree{font:13px/1.45 ui-monospace,monospace;max-height:640px;overflow:auto;border:1px solid #ddd;padding:4px}
#x-tree .r{white-space:pre;cursor:pointer}#x-tree .r.sel{background:#dde7f7}
#x-tree .m{display:inline-block;width:2ch;font-weight:bold}#x-tree .w{display:inline-block;width:2ch;color:#8e24aa;font-weight:bold}
#x-tree .s{display:inline-block;width:9ch;text-align:right;margin-right:1ch;color:#555}
.mark-A .m,.mark-A .n{color:#2e7d32}.mark-M .m,.mark-M .n{color:#b26a00}
.mark-D .m,.mark-D .n{color:#c62828;text-decoration:line-through}.dir .n{font-weight:bold}
#x-details{font:12px ui-monospace,monospace;white-space:pre-wrap;margin-top:6px;min-height:1.4em;color:#333}
#x-title{font-weight:bold;margin-bottom:4px}
"""

SCRIPT = r"""
(function(){
const D=JSON.parse(document.getElementById('x-data').textContent);
const N=D.nodes, kids=N.map(()=>[]), roots=[];
N.forEach((n,i)=>(n[0]<0?roots:kids[n[0]]).push(i));
const cmp=(a,b)=>N[a][1]<N[b][1]?-1:N[a][1]>N[b][1]?1:0;
roots.sort(cmp);kids.forEach(k=>k.sort(cmp));
const paths=[];N.forEach((n,i)=>{paths[i]=(n[0]<0?'':paths[n[0]])+'/'+n[1];});
const changed=D.layers.map(()=>[]);
N.forEach((n,i)=>n[2].forEach(v=>{if(v[1])changed[v[0]].push(i);}));
let L=0,filter='all',query='',sel=-1;const open=new Set();
const LIMIT=5000;
function version(i,l){const h=N[i][2];for(let j=h.length-1;j>=0;j--)if(h[j][0]<=l)return h[j];return null;}
function state(i,l){const v=version(i,l);return v?v[2]:null;}
function mark(i,l){const h=N[i][2];for(let j=h.length-1;j>=0;j--){if(h[j][0]===l)return h[j][1];if(h[j][0]<l)break;}return null;}
function same(a,b){return a[0]===b[0]&&a[1]===b[1]&&a[3]===b[3]&&a[4]===b[4]&&(a[2]===b[2]||!a[2]||!b[2]);}
function cumMark(i,l){if(l===0)return mark(i,0)||null;const a=state(i,0),b=state(i,l);
  if(!a&&!b)return null;if(!a)return'A';if(!b)return'D';return same(a,b)?null:'M';}
function viewMark(i,l){return filter==='cumulative'?cumMark(i,l):mark(i,l);}
function isDir(i,l){let s=state(i,l);if(!s){const v=version(i,l-1);s=v?v[2]:null;}return !!s&&s[0]==='dir';}
function sizeOf(i,l){const z=i<0?D.root_sizes:N[i][3];
  if(z.length||(i>=0&&kids[i].length)){for(let j=z.length-1;j>=0;j--)if(z[j][0]<=l)return z[j][1];return 0;}
  const s=state(i,l);return s?s[1]:0;}
function wasted(i,l){const v=version(i,l);if(!v||!v[2]||v[2][0]!=='file'||!v[2][1])return false;const h=N[i][2];return h[h.length-1]!==v;}
function human(n){let v=n;for(const u of['B','kB','MB','GB']){if(Math.abs(v)<1000||u==='GB')return u==='B'?Math.trunc(v)+' B':v.toFixed(1)+' '+u;v/=1000;}}
function shown(list,l){return list.filter(c=>state(c,l)||viewMark(c,l)==='D');}
function withParents(found){const keep=new Set();for(let n of found){while(n>=0&&!keep.has(n)){keep.add(n);n=N[n][0];}}return keep;}
function marked(l){let found;
  if(filter==='cumulative'&&l>0){const s=new Set();for(let k=1;k<=l;k++)changed[k].forEach(i=>s.add(i));found=[...s].filter(i=>cumMark(i,l));}
  else found=changed[l];return withParents(found);}
function rows(){
  const keep=filter==='all'?null:marked(L);
  let hit=null;if(query){const q=query.toLowerCase();hit=withParents(paths.map((p,i)=>i).filter(i=>paths[i].toLowerCase().includes(q)&&(state(i,L)||viewMark(i,L)==='D')));}
  const out=[],stack=shown(roots,L).reverse().map(c=>[c,0]);
  while(stack.length){const [i,d]=stack.pop();
    if((keep&&!keep.has(i))||(hit&&!hit.has(i)))continue;out.push([i,d]);
    if(kids[i].length&&(hit||open.has(i)))shown(kids[i],L).reverse().forEach(c=>stack.push([c,d+1]));}
  return out;}
function esc(s){return s.replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'})[c]);}
function details(i){if(i<0)return '';let s=state(i,L);const gone=!s;if(gone){const v=version(i,L-1);s=v?v[2]:null;}
  const p=[paths[i]];if(s){const [mode,owner]=s[2]?s[2].split(' '):['',''];p.push(s[0]+(gone?' (removed here)':''));
    if(mode)p.push('mode '+mode);if(owner)p.push('owner '+owner);p.push(sizeOf(i,gone?L-1:L)+' bytes');if(s[3])p.push('-> '+s[3]);}
  p.push('layers '+N[i][2].map(v=>v[0]+(v[1]||'=')).join(' '));if(wasted(i,L))p.push('wasted: a later layer re-writes or removes it');
  return p.join('  ');}
function draw(){
  const r=rows(),html=[];
  for(const [i,d] of r.slice(0,LIMIT)){const m=viewMark(i,L)||'',dir=isDir(i,L),s=state(i,L);
    const op=dir?((open.has(i)||query)?'\u25be ':(kids[i].length?'\u25b8 ':'  ')):'  ';
    const name=N[i][1]+(dir?'/':'')+(s&&s[3]?' -> '+s[3]:'');
    html.push('<div class="r'+(m?' mark-'+m:'')+(dir?' dir':'')+(i===sel?' sel':'')+'" data-i="'+i+'" data-path="'+esc(paths[i])+'" data-mark="'+m+'">'
      +'<span class="m">'+(m||' ')+'</span><span class="w">'+(wasted(i,L)?'W':' ')+'</span><span class="s">'+human(sizeOf(i,m==='D'?L-1:L))+'</span>'
      +'<span class="n">'+'  '.repeat(d)+op+esc(name)+'</span></div>');}
  if(r.length>LIMIT)html.push('<div class="more">'+(r.length-LIMIT)+' more rows: narrow them with the search</div>');
  document.getElementById('x-tree').innerHTML=html.join('');
  const views={all:'whole tree',layer:'changes of this layer',cumulative:'changes since the base layer'};
  document.getElementById('x-title').textContent='Layer '+L+': '+views[filter]+(query?'  search: '+query:'')+'  ('+r.length+' rows, '+human(sizeOf(-1,L))+')';
  document.querySelectorAll('#x-layers tr[data-layer]').forEach(t=>t.classList.toggle('sel',+t.dataset.layer===L));
  document.getElementById('x-details').textContent=details(sel);}
document.getElementById('x-layers').addEventListener('click',e=>{const t=e.target.closest('tr[data-layer]');if(t){L=+t.dataset.layer;draw();}});
document.getElementById('x-tree').addEventListener('click',e=>{const t=e.target.closest('.r');if(!t)return;const i=+t.dataset.i;
  if(kids[i].length&&!query){open.has(i)?open.delete(i):open.add(i);}sel=i;draw();});
document.getElementById('x-filter').addEventListener('change',e=>{filter=e.target.value;draw();});
document.getElementById('x-search').addEventListener('input',e=>{query=e.target.value.trim();draw();});
document.getElementById('x-open').addEventListener('click',()=>{kids.forEach((k,i)=>{if(k.length)open.add(i);});draw();});
document.getElementById('x-close').addEventListener('click',()=>{open.clear();draw();});
draw();
})();
"""


def _human(n: int) -> str:
    from builder.analyze.report import human_size

    return human_size(n)


def explorer_section(model: Explorer, steps: dict[str, str] | None = None) -> str:
    """The explorer's markup, data and script (for render_html); `steps` names the build step of
    each layer (diff_id -> text, from build records)."""
    steps = steps or {}
    from html import escape

    data = json.dumps(to_json(model), separators=(",", ":")).replace("</", "<\\/")
    layers = "".join(
        f'<tr data-layer="{l.index}"><td class="n">{l.index}</td><td class="n">{_human(l.content_size)}</td>'
        f'<td class="n">A {l.added} M {l.modified} D {l.removed}</td>'
        f'<td class="cmd">{escape(("step " + steps[l.diff_id]) if l.diff_id in steps else l.created_by or "-")}</td></tr>'
        for l in model.layers)
    return (f'<div id="explorer"><div><table id="x-layers"><tr><th>#</th><th>content</th><th>changes</th>'
            f'<th>instruction</th></tr>{layers}</table></div>'
            '<div><div id="x-title"></div><div id="x-controls"><select id="x-filter">'
            '<option value="all">whole tree</option><option value="layer">changes of this layer</option>'
            '<option value="cumulative">changes since the base layer</option></select>'
            '<input id="x-search" type="search" placeholder="search paths">'
            '<button id="x-open" type="button">open all</button><button id="x-close" type="button">close all</button>'
            '</div><div id="x-tree"></div><div id="x-details"></div>'
            '<p class="muted">A added, M modified (content, kind, link, mode or owner), D removed, W wasted (a later '
            'layer re-writes or removes the file). A directory shows the bytes of the files below it.</p></div></div>'
            f'<script type="application/json" id="x-data">{data}</script><script>{SCRIPT}</script>')
