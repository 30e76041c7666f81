// The table of all tests, built from the page's data one page of rows at a time, and the
// timeline charts, drawn when their row is opened. Sorting and the filter work on every
// row (plain arrays), never on the DOM, so 20,000 tests cost one page of elements.
(function(){
"use strict";
var data=JSON.parse(document.getElementById("hmn-data").textContent);
var rows=data.rows;  // [test index, timeline slot or -1, cell, cell, ...], as served
var FIRST=2;         // where the cells begin in a row
var table=document.getElementById("tests"),body=table.tBodies[0];
var heads=Array.prototype.slice.call(table.tHead.rows[0].cells);
var keys=heads.map(function(th){return th.getAttribute("data-key");});
var numeric=heads.map(function(th){return th.getAttribute("data-type")==="num";});
var filterBox=document.getElementById("hmn-filter"),sizeBox=document.getElementById("hmn-size");
var prev=document.getElementById("hmn-prev"),next=document.getElementById("hmn-next");
var range=document.getElementById("hmn-range");
var order=rows.map(function(_,i){return i;});  // every row, in the current sort
var view=order;   // the rows the filter keeps, in that order
var page=0,size=Number(sizeBox.value),query="";
var opened={};    // test index -> true: its timeline is drawn under its row
var haystacks=null,timelineText=null,timelines={};

function cellText(c){return typeof c==="string"?c:c[0];}
function sortKey(row,col){
  var c=row[FIRST+col];
  var k=typeof c==="string"?c:c[1];
  if(!numeric[col]){return k===null?"":String(k);}
  return typeof k==="number"?k:null;
}
function cellClass(col,c){
  if(typeof c!=="string"&&c.length>2){return c[2];}
  var key=keys[col];
  if(key==="test"){return "nodeid";}
  if(key==="outcome"){return "outcome-"+c;}
  if(key==="budget"){return "budget";}
  if(/_base$/.test(key)){return "base";}
  if(/_change$/.test(key)){return "change";}
  return "";
}

// ---- rows ------------------------------------------------------------------------------
function makeRow(row){
  var tr=document.createElement("tr");
  tr.setAttribute("data-nodeid",cellText(row[FIRST]));
  for(var col=0;col<keys.length;col++){
    var c=row[FIRST+col],td=document.createElement("td"),cls=cellClass(col,c);
    if(cls){td.className=cls;}
    var k=typeof c==="string"?c:c[1];
    td.setAttribute("data-sort",k===null?"":String(k));
    if(col===0&&row[1]>=0){
      var a=document.createElement("a");
      a.href="#tl-"+row[0];a.className="tl-link";a.textContent=cellText(c);
      a.setAttribute("aria-expanded",opened[row[0]]?"true":"false");
      td.appendChild(a);
    }else{td.textContent=cellText(c);}
    tr.appendChild(td);
  }
  return tr;
}
function render(){
  var pages=Math.max(1,Math.ceil(view.length/size));
  if(page>=pages){page=pages-1;}
  var start=page*size,end=Math.min(view.length,start+size);
  var frag=document.createDocumentFragment();
  for(var k=start;k<end;k++){
    var row=rows[view[k]];
    frag.appendChild(makeRow(row));
    if(opened[row[0]]){frag.appendChild(timelineRow(row));}
  }
  body.textContent="";
  body.appendChild(frag);
  var text=view.length?"tests "+(start+1)+"\u2013"+end+" of "+view.length:"no test";
  if(query){text+=" matching the filter ("+rows.length+" in all)";}
  range.textContent=text;
  prev.disabled=page===0;next.disabled=end>=view.length;
}

// ---- sorting ---------------------------------------------------------------------------
function sortBy(th){
  var col=heads.indexOf(th),num=numeric[col];
  var now=th.getAttribute("aria-sort");
  // Sizes read best heaviest-first, names A-Z; a second click reverses.
  var asc=now?now==="descending":!num;
  var ks=rows.map(function(r){return sortKey(r,col);});
  order=rows.map(function(_,i){return i;});
  order.sort(function(a,b){
    var ka=ks[a],kb=ks[b];
    if(ka===null||kb===null){return ka===kb?a-b:(ka===null?1:-1);}  // missing: last
    var c=ka<kb?-1:(ka>kb?1:0);
    return (asc?c:-c)||a-b;  // ties keep the served order
  });
  heads.forEach(function(h){h.removeAttribute("aria-sort");});
  th.setAttribute("aria-sort",asc?"ascending":"descending");
  applyFilter(query);
}
heads.forEach(function(th){
  th.addEventListener("click",function(){sortBy(th);});
  th.addEventListener("keydown",function(e){if(e.key==="Enter"){sortBy(th);}});
});

// ---- the filter and the pages ----------------------------------------------------------
function haystack(i){
  if(haystacks===null){
    var budget=keys.indexOf("budget");
    haystacks=rows.map(function(r){
      return [r[FIRST],r[FIRST+1],r[FIRST+2],cellText(r[FIRST+budget])].join("\n").toLowerCase();
    });
  }
  return haystacks[i];
}
function applyFilter(q){
  query=q;
  var needle=q.toLowerCase();
  view=needle?order.filter(function(i){return haystack(i).indexOf(needle)>=0;}):order;
  page=0;
  render();
}
filterBox.addEventListener("input",function(){applyFilter(filterBox.value);});
prev.addEventListener("click",function(){if(page>0){page--;render();}});
next.addEventListener("click",function(){if((page+1)*size<view.length){page++;render();}});
sizeBox.addEventListener("change",function(){
  var first=page*size;size=Number(sizeBox.value);page=Math.floor(first/size);render();
});

// ---- timelines -------------------------------------------------------------------------
var COLORS=["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2"];
function esc(s){
  return String(s).replace(/&/g,"&amp;").replace(/</g,"&lt;").replace(/>/g,"&gt;")
    .replace(/"/g,"&quot;").replace(/'/g,"&#x27;");
}
function undelta(d){
  var out=new Array(d.length),last=0;
  for(var i=0;i<d.length;i++){
    if(d[i]===null){out[i]=null;}else{last+=d[i];out[i]=last;}
  }
  return out;
}
function spec(slot){
  if(!(slot in timelines)){
    if(timelineText===null){
      timelineText=document.getElementById("hmn-timelines").textContent.split("\n");
    }
    timelines[slot]=JSON.parse(timelineText[slot]);
  }
  return timelines[slot];
}
function chart(s,nodeid){
  var width=720,height=210,left=78,right=12,top=26,bottom=26;
  var t=undelta(s.t_us).map(function(v){return v/1e6;});
  var tMax=t.length?Math.max.apply(null,t):0;
  function x(v){return left+(tMax>0?v/tMax:0)*(width-left-right);}
  function y(v){return height-bottom-(v/s.y_top)*(height-top-bottom);}
  var out=['<svg class="timeline-chart" role="img" width="'+width+'" height="'+height+'">'+
    "<title>Memory over time: "+esc(nodeid)+"</title>"];
  for(var k=0;k<5;k++){
    var level=y(s.y_top*k/4).toFixed(1);
    out.push('<line class="grid" x1="'+left+'" x2="'+(width-right)+'" y1="'+level+'" y2="'+
      level+'"/><text class="small" x="'+(left-4)+'" y="'+(Number(level)+4).toFixed(1)+
      '" text-anchor="end">'+esc(s.ticks[k])+"</text>");
  }
  out.push('<text class="small" x="'+left+'" y="'+(height-8)+'">0 s</text>'+
    '<text class="small" x="'+(width-right)+'" y="'+(height-8)+'" text-anchor="end">'+
    esc(s.t_max)+"</text>");
  s.series.forEach(function(one,n){
    var color=COLORS[n%COLORS.length],values=undelta(one[2]),d=[],down=false;
    for(var i=0;i<values.length;i++){
      if(values[i]===null){down=false;continue;}  // a gap breaks the line
      d.push((down?"L":"M")+x(t[i]).toFixed(1)+","+y(values[i]).toFixed(1));down=true;
    }
    if(d.length){
      out.push('<path d="'+d.join(" ")+'" fill="none" stroke="'+color+'" stroke-width="1.5">'+
        "<title>"+esc(one[0])+"</title></path>");
    }
    out.push('<text class="small" x="'+(left+4+n*190)+'" y="14" fill="'+color+'">'+
      esc(one[1])+"</text>");
  });
  if(s.exact){
    var lv=y(s.exact[0]);
    out.push('<line class="exact-peak" x1="'+left+'" x2="'+(width-right)+'" y1="'+
      lv.toFixed(1)+'" y2="'+lv.toFixed(1)+'" stroke="'+COLORS[0]+
      '" stroke-dasharray="5,4"><title>'+esc(s.exact[1])+"</title></line>"+
      '<text class="small exact-peak" x="'+(width-right-4)+'" y="'+(lv-4).toFixed(1)+
      '" text-anchor="end" fill="'+COLORS[0]+'">'+esc(s.exact[1])+"</text>");
  }
  out.push("</svg>");
  return out.join("");
}
function timelineRow(row){
  var tr=document.createElement("tr"),td=document.createElement("td");
  tr.className="timeline-row";td.colSpan=keys.length;
  var nodeid=cellText(row[FIRST]);
  td.innerHTML='<figure class="timeline" id="tl-'+row[0]+'"><figcaption><code>'+esc(nodeid)+
    "</code></figcaption>"+chart(spec(row[1]),nodeid)+"</figure>";
  tr.appendChild(td);
  return tr;
}
body.addEventListener("click",function(e){
  var a=e.target.closest?e.target.closest("a.tl-link"):null;
  if(!a){return;}
  e.preventDefault();
  var index=Number(a.getAttribute("href").slice(4));
  if(opened[index]){delete opened[index];}else{opened[index]=true;}
  render();
});
// A link to #tl-N (from a bookmark or another page) opens that test's timeline.
function openFromHash(){
  var m=/^#tl-(\d+)$/.exec(location.hash);
  if(!m){return;}
  var index=Number(m[1]);
  var at=-1;
  for(var k=0;k<view.length;k++){if(rows[view[k]][0]===index){at=k;break;}}
  if(at<0||rows[view[at]][1]<0){return;}
  opened[index]=true;page=Math.floor(at/size);render();
  var fig=document.getElementById("tl-"+index);
  if(fig){fig.scrollIntoView();}
}
window.addEventListener("hashchange",openFromHash);
document.getElementById("hmn-live").hidden=false;
render();
openFromHash();

// ---- #selftest: what the browser test reads back ---------------------------------------
function column(k){
  var col=keys.indexOf(k);
  return view.map(function(i){return sortKey(rows[i],col);});
}
function ordered(values,asc){
  for(var i=1;i<values.length;i++){
    var a=values[i-1],b=values[i];
    if(a===null){if(b!==null){return false;}continue;}
    if(b===null){continue;}
    if(asc?a>b:a<b){return false;}
  }
  return true;
}
function shownMatchView(){
  var shown=Array.prototype.map.call(body.querySelectorAll("tr[data-nodeid]"),
    function(tr){return tr.getAttribute("data-nodeid");});
  var want=view.slice(page*size,page*size+size).map(function(i){return cellText(rows[i][FIRST]);});
  return shown.length===want.length&&shown.every(function(v,i){return v===want[i];});
}
function selftest(){
  var checks=[];
  function check(name,ok){checks.push({name:name,ok:!!ok});}
  try{
    var th=table.querySelector('th[data-key="ram_peak"]');
    th.click();check("ram_peak descending",ordered(column("ram_peak"),false)&&view.length===rows.length);
    th.click();check("ram_peak ascending",ordered(column("ram_peak"),true));
    table.querySelector('th[data-key="test"]').click();
    check("test ascending",ordered(column("test"),true));
    check("page shows the first rows in order",shownMatchView());
    if(view.length>size){
      next.click();
      check("next page",page===1&&shownMatchView());
      prev.click();
    }
    if(rows.length){
      // The filter, as typed: the last row's id keeps exactly the rows whose text holds it.
      var q=cellText(rows[rows.length-1][FIRST]).slice(-6).toUpperCase();
      filterBox.value=q;filterBox.dispatchEvent(new Event("input"));
      var want=rows.filter(function(_,i){return haystack(i).indexOf(q.toLowerCase())>=0;}).length;
      check("filter",view.length===want&&want>0&&shownMatchView()&&ordered(column("test"),true));
      filterBox.value="";filterBox.dispatchEvent(new Event("input"));
      check("filter cleared",view.length===rows.length);
    }
    var withTimeline=view.filter(function(i){return rows[i][1]>=0;});
    if(withTimeline.length){
      var row=rows[withTimeline[0]],at=view.indexOf(withTimeline[0]);
      page=Math.floor(at/size);render();
      body.querySelector('a[href="#tl-'+row[0]+'"]').click();
      var fig=document.getElementById("tl-"+row[0]);
      check("timeline drawn",fig&&fig.querySelector("svg.timeline-chart path"));
    }
  }catch(e){window.__hmnErrors.push("selftest: "+e);}
  var errors=window.__hmnErrors.slice();
  var ok=errors.length===0&&checks.length>=4&&checks.every(function(c){return c.ok;});
  var pre=document.createElement("pre");pre.id="hmn-selftest";
  pre.textContent=JSON.stringify({ok:ok,checks:checks,errors:errors,rows:rows.length,
    shown:body.querySelectorAll("tr[data-nodeid]").length});
  document.body.appendChild(pre);
}
// After load and one more turn, so late script errors and blocked loads are counted too.
if(location.hash==="#selftest"){
  window.addEventListener("load",function(){setTimeout(selftest,0);});
}
})();
