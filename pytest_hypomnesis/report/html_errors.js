// Installed first, in <head>, so that errors of any later script are caught too.
window.__hmnErrors=[];
window.addEventListener("error",function(e){window.__hmnErrors.push("error: "+e.message);});
document.addEventListener("securitypolicyviolation",function(e){
window.__hmnErrors.push("blocked by CSP: "+e.violatedDirective+" "+e.blockedURI);});
(function(){var orig=console.error;console.error=function(){
window.__hmnErrors.push("console.error: "+Array.prototype.join.call(arguments," "));
return orig.apply(console,arguments);};})();
