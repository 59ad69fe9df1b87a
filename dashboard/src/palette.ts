// The charts' line colours, in order.
export const palette = ["#e8a33d", "#4c9be8", "#5fb760", "#d9534f", "#9b6fd6", "#47b8b0", "#c77d4a", "#8a8a8a"];
