// What is clipped or overflows on the page as laid out now, in words (tests/pages/browsing.py):
// - an element whose content is wider or taller than its box, unless its overflow is meant to
//   scroll (form controls scroll their own text);
// - a chart label that reaches out of its chart (an SVG clips what lies outside it);
// - a page wider than its window.
const problems = [];
const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
  (typeof el.className === "string" && el.className.trim()
    ? "." + el.className.trim().split(/\s+/).join(".") : "");
const where = (el) => [el.parentElement && name(el.parentElement), name(el)]
  .filter(Boolean).join(" > ");
const text = (el) => JSON.stringify((el.textContent || "").trim().slice(0, 60));
const root = document.documentElement;
if (root.scrollWidth > root.clientWidth) {
  problems.push(`the page is ${root.scrollWidth} px wide in a ${root.clientWidth} px window`);
}
const scrolls = (v) => v === "auto" || v === "scroll";
for (const el of document.body.querySelectorAll("*")) {
  if (el.closest("svg") || ["INPUT", "SELECT", "TEXTAREA", "OPTION", "SCRIPT", "TEMPLATE"]
      .includes(el.tagName)) continue;
  const style = getComputedStyle(el);
  if (style.display === "none" || (!el.clientWidth && !el.clientHeight)) continue;
  if (!scrolls(style.overflowX) && el.scrollWidth > el.clientWidth + 1) {
    problems.push(`${where(el)}: ${el.scrollWidth} px of content in ${el.clientWidth} px: ` +
                  text(el));
  }
  if (!scrolls(style.overflowY) && el.scrollHeight > el.clientHeight + 1) {
    problems.push(`${where(el)}: ${el.scrollHeight} px of content in ${el.clientHeight} px ` +
                  `high: ${text(el)}`);
  }
}
for (const label of document.querySelectorAll("svg text")) {
  const chart = label.ownerSVGElement.getBoundingClientRect();
  const box = label.getBoundingClientRect();
  const inside = [box.left - chart.left, box.top - chart.top, chart.right - box.right,
                  chart.bottom - box.bottom];
  if (box.width && inside.some((d) => d < -0.5)) {
    problems.push(`chart label ${text(label)} reaches out of its chart (left, top, right, ` +
                  `bottom: ${inside.map(Math.round).join(", ")} px inside)`);
  }
}
return problems;
